#!/usr/bin/env python
"""A full-size contact sheet of the Masks: one JPEG per photo, the Mask alone at 1:1 pixels on grey.

For every photo of ``--faces DIR`` matching ``--glob`` (default: the portraits) it makes the Mask as
the default recipe does (detection with the align stage's upsampling, ``swap_faces(img, faces,
seed=0)``) and writes, for each face the swap changed, a crop around the changed region
(``SwapResult.face_regions``) at the photo's own pixels (no resizing: what a viewer of the full
photo sees), where each pixel is ``a * Mask + (1 - a) * grey``.

``a`` is estimated from the photos: the changed pixels (any channel off by more than
``CHANGED_LEVELS``), closed and their holes filled, give the changed region; the swap's feathered
alpha is about Phi((d - 3 sigma) / sigma) at a distance d inside that region's edge (sigma =
``SwapParams.feather`` x the face size), and ``a`` is that curve measured from the detected edge
(which lies inside the swap's own), so where the Mask still holds a visible share of the
original (the feathered edge) it is mostly grey: the original's hair, background and clothes do
not show, only the Mask's skin and features (checked by eye on every portrait's sheet). The
sheet can therefore be committed; the photos of the faces set cannot.

``--context OUT_DIR`` also writes original | Mask side by side for looking at locally: those hold
the original faces and must never be committed.

Usage:
    PYTHONPATH=src python benchmarks/contact_sheet.py --faces ../shared/data/faces --out docs/img/masks \
        [--glob 'portrait_*'] [--context /tmp/masks_context]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CHANGED_LEVELS = 3  # a pixel counts as changed when a channel moved by more than this
SHIFT = 0.0  # sigmas further in than the swap's own half-alpha line (see display_alpha)
GREY = 128
MARGIN = 8  # px of grey around the changed region's box
QUALITY = 88


def changed_region(orig: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """0/1 uint8 (box-sized): the pixels the swap changed, closed, holes filled, specks dropped."""
    y0, x0, y1, x1 = box
    diff = np.abs(orig[y0:y1, x0:x1].astype(np.int16) - mask[y0:y1, x0:x1].astype(np.int16)).max(axis=2)
    m = (diff > CHANGED_LEVELS).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return m
    big = max(cv2.contourArea(c) for c in contours)
    filled = np.zeros_like(m)
    cv2.drawContours(filled, [c for c in contours if cv2.contourArea(c) >= 0.05 * big], -1, 1, cv2.FILLED)
    return filled


def display_alpha(region: np.ndarray, sigma: float) -> np.ndarray:
    """The share of the Mask shown per pixel: the swap's feather curve, ``SHIFT`` sigmas further in.

    The distance is measured from the detected region's edge, which lies inside the swap's own (a
    pixel changed by only a few levels is not detected), so with ``SHIFT`` = 0 the curve shown
    already runs behind the swap's: where the Mask still holds much of the original, little shows.
    The photo's border counts as an edge too: a face cut by the frame is shown greyed there rather
    than with the original's hair.
    """
    pad = np.pad(region, 1, constant_values=0)
    d = cv2.distanceTransform(pad, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    z = (d - (3.0 + SHIFT) * sigma) / (sigma * math.sqrt(2.0))
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return (0.5 * (1.0 + erf(z))).astype(np.float32) * region


def mask_only(orig: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], sigma: float) -> np.ndarray:
    """The crop of ``box`` (plus MARGIN) showing only the Mask over grey."""
    y0, x0, y1, x1 = box
    a = display_alpha(changed_region(orig, mask, box), sigma)
    crop = mask[y0:y1, x0:x1].astype(np.float32)
    out = a[..., None] * crop + (1.0 - a[..., None]) * GREY
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.pad(out, ((MARGIN, MARGIN), (MARGIN, MARGIN), (0, 0)), constant_values=GREY)


def face_size(lm: np.ndarray) -> float:
    """The swap's face scale: the landmark box diagonal / sqrt(2)."""
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    return float(np.hypot(*(hi - lo)) / np.sqrt(2))


def _save(path: Path, rgb: np.ndarray, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])


def main() -> None:
    from imnkit.face.detect import detect_faces
    from imnkit.face.swap import SwapParams, swap_faces
    from imnkit.imageio import load_image
    from imnkit.stage import get_stage

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, required=True, help="folder of photos")
    ap.add_argument("--glob", default="portrait_*", help="which photos of the folder (default portrait_*)")
    ap.add_argument("--out", type=Path, default=Path("docs/img/masks"), help="folder of the Mask-only JPEGs")
    ap.add_argument("--quality", type=int, default=QUALITY)
    ap.add_argument("--context", type=Path, help="also write original | Mask here (local only: never commit)")
    args = ap.parse_args()
    upsample = get_stage("align").resolve_params({})["upsample"]
    photos = sorted(p for p in args.faces.glob(args.glob) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    feather = SwapParams().feather
    listing = []
    for path in photos:
        img = load_image(path, background=(255, 255, 255))
        faces = detect_faces(img, upsample=upsample).faces  # as the default recipe's align stage
        if not faces:
            print(f"{path.name}: no face found", file=sys.stderr)
            continue
        res = swap_faces(img, faces, seed=0)
        for k, (face, box, name) in enumerate(zip(faces, res.face_regions, res.identities)):
            if box is None:
                continue
            sigma = max(0.5, feather * face_size(np.asarray(face.landmarks, np.float64)))
            tile = mask_only(img, res.image, box, sigma)
            stem = path.stem if len(faces) == 1 else f"{path.stem}_{k}"
            _save(args.out / f"{stem}.jpg", tile, args.quality)
            listing.append((stem, name, tile.shape[1], tile.shape[0]))
            if args.context:
                y0, x0, y1, x1 = box
                _save(args.context / f"{stem}_context.jpg",
                      np.hstack([img[y0:y1, x0:x1], res.image[y0:y1, x0:x1]]), 92)
    total = sum(p.stat().st_size for p in args.out.glob("*.jpg"))
    for stem, name, w, h in listing:
        print(f"| [{stem}](img/masks/{stem}.jpg) | `{name}` | {w}x{h} |")
    print(f"{len(listing)} Masks, {total / 1e6:.2f} MB in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
