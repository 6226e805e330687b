#!/usr/bin/env python
"""Does the Mask's open mouth show the person's own teeth? Its inside against theirs and others'.

For every photo of ``--faces DIR`` matching ``--glob`` it detects the faces (as the default recipe's
align stage), keeps those whose mouth is open (mouth opening >= ``--min-open``, inner mouth at
least ``--min-width`` px wide) and makes the Mask with the classical swap (seed 0), once per
``--mouth`` mode. Each Mask's mouth inside, read where dlib's landmarks re-fitted on the Mask put
it, is compared (:mod:`imnkit.face.mouth_match`: normalised correlation of the detail after
warping the inside onto one canonical mouth) with

* the person's own mouth inside (``own``), and
* every other kept person's (the control: ``others`` is their mean, ``nearest`` their maximum).

Reported per mode: the mean of ``own`` and of ``others``, their mean difference, and how often the
person's own mouth is the nearest of all (``picked_own``; chance is 1 / the number of people). A
Mask that copies the teeth reads ``own`` far above ``others`` and picks its owner every time; one
that shows none of them reads ``own`` as ``others`` and picks its owner at about chance.

Usage:
    PYTHONPATH=src python benchmarks/mouth_leak.py --faces ../shared/data/faces [--mouth synthetic original] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.face.detect import detect_faces, fit_landmarks, predictor_box  # noqa: E402
from imnkit.face.expression import measure  # noqa: E402
from imnkit.face.mouth_match import mouth_correlation, mouth_patch  # noqa: E402
from imnkit.face.swap import SwapParams, swap_faces  # noqa: E402
from imnkit.imageio import load_image  # noqa: E402
from imnkit.stage import get_stage  # noqa: E402

ALIGN_UPSAMPLE = get_stage("align").resolve_params({})["upsample"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, required=True, help="folder of photos")
    ap.add_argument("--glob", default="*", help="which photos of the folder (default: all)")
    ap.add_argument("--mouth", nargs="+", default=["synthetic", "original"], help="swap mouth modes to measure")
    ap.add_argument("--min-open", type=float, default=0.08, help="smallest mouth opening kept (default 0.08)")
    ap.add_argument("--min-width", type=float, default=40.0,
                    help="smallest inner mouth width kept, px (default 40: smaller teeth are a few pixels)")
    ap.add_argument("--json", type=Path, help="write the per-face figures here")
    args = ap.parse_args()

    photos = sorted(p for p in args.faces.glob(args.glob) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    kept = []  # (photo name, image, faces, indices of the open-mouthed faces)
    for path in photos:
        img = load_image(path, background=(255, 255, 255))
        faces = detect_faces(img, upsample=ALIGN_UPSAMPLE).faces
        open_ = [k for k, f in enumerate(faces)
                 if measure(f.landmarks).mouth_open >= args.min_open
                 and np.linalg.norm(f.landmarks[64] - f.landmarks[60]) >= args.min_width]
        if open_:
            kept.append((path.name, img, faces, open_))
    people = [(name, k, mouth_patch(img, faces[k].landmarks)) for name, img, faces, idx in kept for k in idx]
    if len(people) < 2:
        raise SystemExit(f"fewer than two open mouths in {args.faces} ({len(people)})")
    summary, rows = {"people": len(people), "chance": round(1.0 / len(people), 3)}, []
    for mode in args.mouth:
        own, others, picked, secs = [], [], [], []
        i = 0
        for name, img, faces, idx in kept:
            t = time.perf_counter()
            res = swap_faces(img, faces, seed=0, params=SwapParams(mouth=mode))
            secs.append(time.perf_counter() - t)
            for k in idx:
                mask = mouth_patch(res.image, fit_landmarks(res.image, predictor_box(faces[k])))
                corr = [mouth_correlation(mask, p[2]) for p in people]
                if corr[i] is None:
                    i += 1
                    continue
                ctrl = [c for j, c in enumerate(corr) if j != i and c is not None]
                own.append(corr[i])
                others.append(float(np.mean(ctrl)))
                picked.append(corr[i] > max(ctrl))
                rows.append({"mode": mode, "photo": name, "face": k, "own": round(corr[i], 4),
                             "others": round(others[-1], 4), "nearest_other": round(max(ctrl), 4)})
                print(f"{mode:10s} {name:28s} {k} own {corr[i]:+.3f}  others {others[-1]:+.3f}  "
                      f"nearest other {max(ctrl):+.3f}", flush=True)
                i += 1
        summary[mode] = {
            "faces": len(own),
            "own_mean": round(float(np.mean(own)), 4),
            "others_mean": round(float(np.mean(others)), 4),
            "own_minus_others": round(float(np.mean(np.subtract(own, others))), 4),
            "own_minus_others_se": round(float(np.std(np.subtract(own, others), ddof=1) / np.sqrt(len(own))), 4),
            "picked_own_pct": round(100.0 * float(np.mean(picked)), 1),
            "swap_seconds_mean": round(float(np.mean(secs)), 2),
        }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "faces": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
