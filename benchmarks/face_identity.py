#!/usr/bin/env python
"""Detection + classical swap over shared/data/faces: faces found, identity change, timings.

For every photo (portrait_*, multi_*, hard_*, and noface_* for false positives) it reports:
faces found and skipped (with reasons), the dlib distance protected vs Mask for each face, and
seconds for detection and swap at the photo's own size. The distance is measured independently
of the swap's own check: the 68 landmarks are re-fitted on the Mask image inside the face box.
Two swap settings are measured:

* raw: one seeded identity per face, no identity check (``min_distance=None``): what the
  warp/colour/blend alone achieve;
* checked: the default (``min_distance=0.6``), which tries other pool identities for faces the
  first one does not move far enough.

It also times detection alone with the photo resized to 512 and 1024 px (longest side).

Usage:
    PYTHONPATH=src python benchmarks/face_identity.py [--faces DIR] [--json out.json] [--save-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.face.detect import detect_faces, fit_landmarks, make_face  # noqa: E402
from imnkit.face.descriptors import descriptor_distance, face_descriptor  # noqa: E402
from imnkit.face.swap import swap_faces  # noqa: E402
from imnkit.imageio import load_image  # noqa: E402

THRESHOLD = 0.6


def load_rgb(path: Path) -> np.ndarray:
    return load_image(path, background=(255, 255, 255))  # transparency shown on white, as a viewer does


def resized(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = side / max(h, w)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def mask_distance(img, mask, face, desc0=None) -> float:
    again = make_face(fit_landmarks(mask, face.box), face.box)
    d0 = face_descriptor(img, face) if desc0 is None else desc0
    return descriptor_distance(d0, face_descriptor(mask, again))


def main() -> None:
    root = Path(os.environ.get("IMNKIT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=root / "data" / "faces")
    ap.add_argument("--json", type=Path, help="also write the per-photo results here")
    ap.add_argument("--save-dir", type=Path, help="write each Mask image here as PNG")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--assign", choices=("seeded", "similar"), default="seeded")
    args = ap.parse_args()
    if not args.faces.is_dir():
        raise SystemExit(f"no photos at {args.faces}; set IMNKIT_SHARED or pass --faces")

    detect_faces(np.zeros((64, 64, 3), np.uint8))  # load the models outside the timings
    rows = []
    photos = sorted(p for p in args.faces.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    print(f"{'photo':28s} {'size':>9s} {'faces':>5s} {'skip':>4s} {'det s':>6s} {'d512':>6s} {'d1024':>6s} "
          f"{'swap s':>6s} {'chk s':>6s}  distances raw / checked")
    for p in photos:
        kind = p.name.split("_")[0]
        img = load_rgb(p)
        h, w = img.shape[:2]
        det, t_det = timed(detect_faces, img)
        _, t512 = timed(detect_faces, resized(img, 512), max_side=512)
        _, t1024 = timed(detect_faces, resized(img, 1024), max_side=1024)
        row = {"photo": p.name, "kind": kind, "width": w, "height": h, "faces": len(det.faces),
               "skipped": [s.reason for s in det.skipped], "detect_s": t_det,
               "detect_512_s": t512, "detect_1024_s": t1024, "raw": [], "checked": [],
               "identities_raw": [], "identities_checked": []}
        if not det.faces:  # what turning the photo would find (try_rotations=True)
            row["faces_with_rotations"] = len(detect_faces(img, try_rotations=True).faces)
        if det.faces:
            descs = [face_descriptor(img, f) for f in det.faces]
            raw, t_raw = timed(swap_faces, img, det.faces, seed=args.seed, min_distance=None, assign=args.assign)
            chk, t_chk = timed(swap_faces, img, det.faces, seed=args.seed, assign=args.assign)
            row["raw"] = [mask_distance(img, raw.image, f, d) for f, d in zip(det.faces, descs)]
            row["checked"] = [mask_distance(img, chk.image, f, d) for f, d in zip(det.faces, descs)]
            row["identities_raw"], row["identities_checked"] = raw.identities, chk.identities
            row["swap_s"], row["swap_checked_s"] = t_raw, t_chk
            row["region"] = chk.region
            if args.save_dir:
                args.save_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(chk.image).save(args.save_dir / (p.stem + ".mask.png"))
        rows.append(row)
        dist = " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(row["raw"], row["checked"]))
        if "faces_with_rotations" in row:
            dist = f"(with try_rotations: {row['faces_with_rotations']} faces)"
        print(f"{p.name:28s} {w:4d}x{h:<4d} {len(det.faces):5d} {len(det.skipped):4d} {t_det:6.2f} {t512:6.2f} "
              f"{t1024:6.2f} {row.get('swap_s', 0):6.2f} {row.get('swap_checked_s', 0):6.2f}  {dist}",
              flush=True)

    print("\nsummary per kind (faces found; identity distance protected vs Mask):")
    for kind in ("portrait", "multi", "hard", "noface"):
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        n = sum(r["faces"] for r in rs)
        line = f"  {kind:8s} photos={len(rs):2d} faces={n:3d}"
        if kind == "noface":
            line += f"  false positives={n} (photos with any: {sum(r['faces'] > 0 for r in rs)})"
        else:
            raw = np.array([d for r in rs for d in r["raw"]])
            chk = np.array([d for r in rs for d in r["checked"]])
            line += f"  no face in {sum(r['faces'] == 0 for r in rs)} photos"
            if len(raw):
                line += (f"  raw: mean {raw.mean():.3f} min {raw.min():.3f} >=0.6 {100 * np.mean(raw >= THRESHOLD):.1f}%"
                         f"  checked: mean {chk.mean():.3f} min {chk.min():.3f} >=0.6 {100 * np.mean(chk >= THRESHOLD):.1f}%")
        print(line)
    raw = np.array([d for r in rows for d in r["raw"]])
    chk = np.array([d for r in rows for d in r["checked"]])
    print(f"  all faces: {len(raw)}  raw >=0.6: {100 * np.mean(raw >= THRESHOLD):.1f}%  "
          f"checked >=0.6: {100 * np.mean(chk >= THRESHOLD):.1f}%  (target >= 90%)")
    for key in ("detect_512_s", "detect_1024_s"):
        v = np.array([r[key] for r in rows])
        print(f"  {key}: median {np.median(v):.3f} s, max {v.max():.3f} s")
    sw = np.array([r["swap_s"] / max(1, r["faces"]) for r in rows if r["faces"]])
    print(f"  swap per face (raw): median {np.median(sw):.3f} s, max {sw.max():.3f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
