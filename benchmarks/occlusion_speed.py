#!/usr/bin/env python
"""Seconds per face of the occluder search (``imnkit.face.occlusion.occluder_mask``), and what it keeps.

For every face the align stage finds in ``../shared/data/faces`` (fallback faces skipped, as the
swap stage skips obfuscated ones), ``occluder_mask`` runs ``--repeats`` times; the median per
face and the mean over faces are reported, with the fraction of the face box kept per photo.
Face detection is not timed.

Usage:
    PYTHONPATH=src python benchmarks/occlusion_speed.py [--faces DIR] [--only NAME ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.face.detect import detect_faces  # noqa: E402
from imnkit.face.occlusion import occluder_mask  # noqa: E402
from imnkit.imageio import load_image  # noqa: E402


def main() -> None:
    root = Path(os.environ.get("IMNKIT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=root / "data" / "faces")
    ap.add_argument("--only", nargs="*", help="only these photo names")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not args.faces.is_dir():
        raise SystemExit(f"no photos at {args.faces}; set IMNKIT_SHARED or pass --faces")
    names = args.only or sorted(p.name for p in args.faces.iterdir()
                                if p.suffix.lower() in (".png", ".jpg", ".jpeg") and not p.name.startswith("noface"))
    per_face = []
    for name in names:
        img = load_image(args.faces / name, background=(255, 255, 255))
        kept = []
        for face in detect_faces(img).faces:
            if face.treatment != "swap":
                continue
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                found = occluder_mask(img, face)
                times.append(time.perf_counter() - t)
            per_face.append(statistics.median(times))
            kept.append(0.0 if found is None else round(float((found[0] > 0.5).mean()), 3))
        print(f"{name:28s} faces {len(kept):2d} kept {kept}", flush=True)
    summary = {"faces": len(per_face), "ms_per_face_mean": round(1000 * float(np.mean(per_face)), 1),
               "ms_per_face_median": round(1000 * float(np.median(per_face)), 1),
               "ms_per_face_max": round(1000 * float(np.max(per_face)), 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
