#!/usr/bin/env python
"""Does anything of the original face show through its Mask (a "ghost": brows, eyes, nostrils, mouth line)?

For every face of ``--faces DIR`` matching ``--glob`` (faces at least ``--min-size`` px wide) the
default classical swap makes the Mask; then, on luminance band-passed to the scale of facial
features (difference of Gaussians at 0.6 % and 3 % of the face width), it computes the normalised
correlation of the Mask with

* the original face (``ghost``), and
* a control: other photos' faces (the largest of each of the next ``--controls`` photos) warped
  onto the original's 68 landmarks (``control``, the mean of their correlations), so they share
  the original's layout exactly but none of its pixels.

The Mask follows the original's pose and expression, so it correlates with both through the
layout alone; only what shows through correlates with the original beyond the control. The
figures are taken over the feature region (the hulls of brows, eyes, nose and mouth of both the
original and the Mask, grown by 10 %) and over the brows (each brow of both layouts as a band 3 %
of the face width above and below its landmarks: where a second pair of brows showed).
Excess = ghost - control; 0 is no ghost. ``--inject A`` adds A x the original's band-passed
detail to each Mask first, to show what a ghost of that strength reads as (the measure's check).

Usage:
    PYTHONPATH=src python benchmarks/ghost.py --faces ../shared/data/faces [--glob '*'] [--json out.json]
    ... --feature-cover 0       (the feathered edge alone over the protected features)
    Before the fix (commit 349f073): run this file from a worktree of that commit
    (git worktree add /tmp/base 349f073 && cp benchmarks/ghost.py /tmp/base/benchmarks/).
    ... --inject 0.2            (what a 20 % ghost reads as)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.face.detect import detect_faces, fit_landmarks, predictor_box  # noqa: E402
from imnkit.face.swap import SwapParams, swap_faces  # noqa: E402
from imnkit.face.warp import delaunay, piecewise_affine  # noqa: E402
from imnkit.imageio import load_image  # noqa: E402
from imnkit.stage import get_stage  # noqa: E402

ALIGN_UPSAMPLE = get_stage("align").resolve_params({})["upsample"]
FEATURES = (np.r_[17:22], np.r_[22:27], np.r_[36:42], np.r_[42:48], np.r_[27:36], np.r_[48:68])
BROWS = np.r_[17:27]


def face_width(lm: np.ndarray) -> float:
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    return float(np.hypot(*(hi - lo)) / np.sqrt(2))


def luma(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def band(y: np.ndarray, width: float) -> np.ndarray:
    """Feature-scale detail: Gaussian at 0.6 % minus Gaussian at 3 % of the face width."""
    fine, coarse = max(0.6, 0.006 * width), max(2.0, 0.03 * width)
    return cv2.GaussianBlur(y, (0, 0), fine) - cv2.GaussianBlur(y, (0, 0), coarse)


def hull_mask(shape: tuple[int, int], pts: np.ndarray, grow: float = 1.0) -> np.ndarray:
    c = pts.mean(axis=0)
    hull = cv2.convexHull(np.round((c + grow * (pts - c)) * 16).astype(np.int32))
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, hull, 1, lineType=cv2.LINE_8, shift=4)
    return m


def regions(shape: tuple[int, int], lms: list[np.ndarray], width: float) -> dict[str, np.ndarray]:
    """0/1 masks of the feature region and the brow band, from the layouts ``lms``."""
    feats = np.zeros(shape, np.uint8)
    for lm in lms:
        for idx in FEATURES:
            feats |= hull_mask(shape, lm[idx], 1.1)
    brow = np.zeros(shape, np.uint8)
    for lm in lms:  # each brow as a band 3 % of the face width either side of its landmarks
        for idx in (BROWS[:5], BROWS[5:]):
            up, down = lm[idx] - [0, 0.03 * width], lm[idx] + [0, 0.03 * width]
            brow |= hull_mask(shape, np.vstack([up, down]), 1.1)
    return {"features": feats, "brows": brow}


def ncc(a: np.ndarray, b: np.ndarray, sel: np.ndarray) -> float:
    m = sel.astype(bool)
    x, y = a[m].astype(np.float64), b[m].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-9))


def warp_onto(src: np.ndarray, src_lm: np.ndarray, dst_lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``src``'s face warped so that its 68 landmarks land on ``dst_lm`` (a whole-photo-sized canvas)."""
    def ring(lm):
        c = lm.mean(axis=0)
        return c + 1.6 * (lm[:27] - c)
    sp, dp = np.vstack([src_lm, ring(src_lm)]), np.vstack([dst_lm, ring(dst_lm)])
    h, w = shape
    warped, _ = piecewise_affine(src, sp, dp, delaunay(sp), (0, 0, h, w))
    return warped


def _largest(faces):
    return max(faces, key=lambda f: face_width(np.asarray(f.landmarks)))


def faces_of(photos: list[Path], min_size: int):
    for path in photos:
        img = load_image(path, background=(255, 255, 255))
        faces = [f for f in detect_faces(img, upsample=ALIGN_UPSAMPLE).faces
                 if face_width(np.asarray(f.landmarks)) >= min_size]
        if faces:
            yield path, img, faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, required=True)
    ap.add_argument("--glob", default="portrait_*")
    ap.add_argument("--min-size", type=int, default=64, help="faces narrower than this (px) are left out")
    ap.add_argument("--controls", type=int, default=4, help="control faces per face (other photos')")
    ap.add_argument("--inject", type=float, default=0.0, help="add this share of the original's detail (check)")
    ap.add_argument("--feature-cover", type=float,
                    help="the swap's feature_cover (0: the feathered edge alone over the protected features)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    params = SwapParams() if args.feature_cover is None else SwapParams(feature_cover=args.feature_cover)
    photos = sorted(p for p in args.faces.glob(args.glob) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    found = list(faces_of(photos, args.min_size))
    if len(found) < 2:
        raise SystemExit("need faces in at least two photos (one is the other's control)")
    rows = []
    for k, (path, img, faces) in enumerate(found):
        res = swap_faces(img, faces, seed=0, params=params)
        controls = [found[(k + i) % len(found)] for i in range(1, min(args.controls, len(found) - 1) + 1)]
        for j, face in enumerate(faces):
            lm = np.asarray(face.landmarks, np.float64)
            mask_lm = fit_landmarks(res.image, predictor_box(face))
            width = face_width(lm)
            y_o, y_m = luma(img), luma(res.image)
            d_o, d_m = band(y_o, width), band(y_m, width)
            d_cs = [band(luma(warp_onto(c_img, np.asarray(_largest(c_faces).landmarks, np.float64), lm,
                                        img.shape[:2])), width) for _, c_img, c_faces in controls]
            if args.inject:
                d_m = d_m + args.inject * d_o
            row = {"photo": path.name, "face": j, "controls": [c[0].name for c in controls], "width": round(width)}
            for name, sel in regions(img.shape[:2], [lm, mask_lm], width).items():
                g, c = ncc(d_m, d_o, sel), float(np.mean([ncc(d_m, d_c, sel) for d_c in d_cs]))
                row[name] = {"ghost": round(g, 4), "control": round(c, 4), "excess": round(g - c, 4)}
            rows.append(row)
            print(f"{path.name:28s} {j} w={width:4.0f}  features {row['features']['ghost']:+.3f} vs "
                  f"{row['features']['control']:+.3f}   brows {row['brows']['ghost']:+.3f} vs {row['brows']['control']:+.3f}")
    summary = {"photos": len(found), "faces": len(rows), "inject": args.inject}
    for name in ("features", "brows"):
        ex = np.array([r[name]["excess"] for r in rows])
        summary[name] = {
            "ghost_mean": round(float(np.mean([r[name]["ghost"] for r in rows])), 4),
            "control_mean": round(float(np.mean([r[name]["control"] for r in rows])), 4),
            "excess_mean": round(float(ex.mean()), 4),
            "excess_se": round(float(ex.std(ddof=1) / np.sqrt(len(ex))), 4),
            "excess_max": round(float(ex.max()), 4),
            "faces_over_0.05": int((ex > 0.05).sum()),
        }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "faces": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
