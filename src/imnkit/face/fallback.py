"""Masks for faces the natural swap cannot take: no face found is ever left bare.

A face reaches this module when dlib's 68 landmarks could not be fitted to it (a profile past
what the predictor follows, a heavily covered face, a face cut by the frame: ``Face.treatment ==
"fallback"``, its landmarks being a mean face fitted to CenterFace's 5 points), or when the
natural swap changed no pixel of it. Treatments, best first:

``warp5``      the classical swap of a pool identity warped onto the landmarks fitted from the 5
               points (an affine fit, so a turned head's foreshortening is followed); no identity
               check, since dlib's recogniser cannot measure such a face. Kept when it changes at
               least ``min_cover`` of the face's core (the box around its 5 points).
``obfuscate``  a strong, smooth obfuscation: the face's ellipse (from the detector box) is
               pixelated to about 6 blocks across, blurred and blended in with a feathered edge.

Every changed pixel lies in the returned box, which the swap stage adds to ``swap.regions`` so
the embed stage hides the original there like any other face.
"""

from __future__ import annotations

import cv2
import numpy as np

from imnkit.face.detect import Box, Face
from imnkit.face.identities import Identity
from imnkit.face.swap import SwapParams, swap_face

TREATMENT_SWAP = "swap"
TREATMENT_WARP5 = "warp5"
TREATMENT_OBFUSCATE = "obfuscate"
TREATMENTS = (TREATMENT_SWAP, TREATMENT_WARP5, TREATMENT_OBFUSCATE)


def core_box(face: Face, shape: tuple[int, int]) -> Box:
    """The box around the face's 5 points, widened by a quarter of its size, clipped to the photo."""
    p = np.asarray(face.points5, np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    pad = 0.25 * max(float((hi - lo).max()), 4.0)
    h, w = shape
    x0, y0 = int(np.floor(lo[0] - pad)), int(np.floor(lo[1] - pad))
    x1, y1 = int(np.ceil(hi[0] + pad)) + 1, int(np.ceil(hi[1] + pad)) + 1
    return max(0, y0), max(0, x0), min(h, y1), min(w, x1)


def coverage(before: np.ndarray, after: np.ndarray, box: Box) -> float:
    """Fraction of the pixels of ``box`` that differ between ``before`` and ``after``."""
    y0, x0, y1, x1 = box
    if y1 <= y0 or x1 <= x0:
        return 0.0
    return float(np.any(before[y0:y1, x0:x1] != after[y0:y1, x0:x1], axis=2).mean())


def obfuscate_face(image: np.ndarray, face: Face, *, blocks: int = 6) -> tuple[np.ndarray, Box | None]:
    """Pixelate and blur the face's ellipse (detector box widened 15 %); returns (image, changed box)."""
    h, w = image.shape[:2]
    y0, x0, y1, x1 = face.box
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    ry, rx = 0.58 * (y1 - y0) + 2, 0.58 * (x1 - x0) + 2
    by0, bx0 = max(0, int(cy - ry) - 1), max(0, int(cx - rx) - 1)
    by1, bx1 = min(h, int(np.ceil(cy + ry)) + 2), min(w, int(np.ceil(cx + rx)) + 2)
    if by1 - by0 < 4 or bx1 - bx0 < 4:
        return image.copy(), None
    roi = image[by0:by1, bx0:bx1]
    rh, rw = roi.shape[:2]
    side = max(rh, rw)
    small = cv2.resize(roi, (max(1, round(blocks * rw / side)), max(1, round(blocks * rh / side))),
                       interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    coarse = cv2.GaussianBlur(coarse, (0, 0), side / (3 * blocks))  # blocks without hard edges
    alpha = np.zeros((rh, rw), np.float32)
    cv2.ellipse(alpha, (int(round(cx - bx0)), int(round(cy - by0))), (int(rx * 0.9), int(ry * 0.9)),
                0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.04 * side))
    alpha[alpha < 1.0 / 512] = 0.0
    new = np.clip(np.rint(roi + alpha[..., None] * (coarse - roi)), 0, 255).astype(np.uint8)
    out = image.copy()
    out[by0:by1, bx0:bx1] = new
    changed = np.any(new != roi, axis=2)
    if not changed.any():
        return out, None
    ys, xs = np.nonzero(changed.any(axis=1))[0], np.nonzero(changed.any(axis=0))[0]
    return out, (by0 + int(ys[0]), bx0 + int(xs[0]), by0 + int(ys[-1]) + 1, bx0 + int(xs[-1]) + 1)


def mask_fallback_face(
    image: np.ndarray,
    face: Face,
    identity: Identity,
    params: SwapParams = SwapParams(),
    *,
    min_cover: float = 0.6,
) -> tuple[np.ndarray, Box | None, str]:
    """The best Mask that works for one face: ``(image, changed box, treatment)``.

    Tries ``warp5`` (see the module docstring), then ``obfuscate``.
    """
    core = core_box(face, image.shape[:2])
    out, reg = swap_face(image, face, identity, params)
    if reg is not None and coverage(image, out, core) >= min_cover:
        return out, reg, TREATMENT_WARP5
    out, reg = obfuscate_face(image, face)
    return out, reg, TREATMENT_OBFUSCATE
