#!/usr/bin/env python
"""Fit the box dlib's 68-point predictor starts from when a face comes from CenterFace alone.

dlib's predictor was trained from its HOG detector's boxes and lands best when started from one.
Over the permissively licensed photos of ``../shared/data/train_faces`` (MIT / Apache / BSD /
Boost repositories, as scripts/build_identities.py uses; never the measurement photos), every face
both detectors find gives the HOG box in the frame of CenterFace's five points: corner offsets
from the points' centre, in units of the eye-to-mouth distance. The medians are
``imnkit.face.detect.HOG_BOX_FROM_POINTS5``.

Usage:
    PYTHONPATH=src python scripts/fit_centerface_box.py [--train ../shared/data/train_faces]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np

PERMISSIVE = ("MIT", "Apache", "BSD", "Boost")


def pairs(image: np.ndarray) -> list[list[float]]:
    """(left, top, right, bottom) offsets of each HOG box from the matching CenterFace face's frame."""
    from imnkit.face import models
    from imnkit.face.centerface import detect_centerface_multiscale

    h, w = image.shape[:2]
    scale = min(1.0, 1024 / max(h, w))
    work = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    rects, _, _ = models.hog_detector().run(work, 1, -0.3)
    out = []
    for hit in detect_centerface_multiscale(image):
        p = hit.points5.astype(np.float64)
        c = p.mean(axis=0)
        s = float(np.linalg.norm(p[[3, 4]].mean(0) - p[[0, 1]].mean(0)))
        if s < 8:
            continue
        for r in rects:
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1]) / scale - [0, 0, 1, 1]
            inside = box[0] <= c[0] <= box[2] and box[1] <= c[1] <= box[3]
            if inside and (box[2] - box[0]) < 4 * s:
                out.append(list((box - [c[0], c[1], c[0], c[1]]) / s))
    return out


def main() -> None:
    from imnkit.imageio import load_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "train_faces")
    args = ap.parse_args()
    rows = csv.DictReader(open(args.train / "SOURCES.tsv"), delimiter="\t")
    files = sorted(r["file"] for r in rows if r["licence_of_repo"].startswith(PERMISSIVE))
    found = [o for f in files for o in pairs(load_image(args.train / f))]
    a = np.array(found)
    med = np.median(a, axis=0)
    print(json.dumps({"photos": len(files), "faces": len(a), "median": [round(float(v), 3) for v in med],
                      "iqr": [round(float(v), 3) for v in np.subtract(*np.percentile(a, [75, 25], axis=0))]}))


if __name__ == "__main__":
    main()
