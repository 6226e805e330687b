"""How alike two open mouths' insides are: the measure of whether a Mask shows the person's own teeth.

Each mouth's inside (the inner-lip polygon of its 68 landmarks, iBUG 60-67) is warped piecewise
affinely onto one canonical inner-lip polygon, so every open mouth fills the same frame whatever its
shape (the opening and the smile are the expression, which every Mask keeps: they must not count as
likeness). It is turned grey and its coarse shading (a Gaussian of :data:`DETAIL_SIGMA`, over the
inside only) taken away, so that what is compared is the detail that tells people apart (the teeth's
edges, gaps and shapes), not the bright-teeth, dark-throat layout every open mouth shares. Two mouths
are compared by the normalised correlation of that detail over the canonical inside.

``benchmarks/mouth_leak.py`` compares each Mask's mouth with the person's own and with other
people's (the control): a Mask that copies the person's teeth correlates far more with their own.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from imnkit.face.warp import delaunay, piecewise_affine

#: the canonical frame (width, height) and its inner-lip polygon (iBUG 60-67): corners 64 px apart,
#: the lips parted by 24 px in the middle
FRAME = (96, 64)
CANONICAL = np.array([[16, 32], [30, 23], [48, 20], [66, 23], [80, 32], [66, 41], [48, 44], [30, 41]], np.float64)
#: the coarse shading taken away before comparing (canonical pixels)
DETAIL_SIGMA = 4.0
#: canonical pixels next to the lips left out (where landmark error puts lip pixels)
EDGE = 2
#: an inner-lip polygon smaller than this (photo px) has no inside to compare (a closed mouth)
MIN_AREA = 40.0
#: the largest shift (canonical px) tried when comparing
SHIFT = 3
_RING = 1.8  # the warp's outer points: the inner lips pushed out from their centre


def _with_ring(pts: np.ndarray) -> np.ndarray:
    c = pts.mean(axis=0)
    return np.vstack([pts, c + _RING * (pts - c)])


@functools.lru_cache(maxsize=1)
def _canonical() -> tuple[np.ndarray, np.ndarray]:
    """The warp's triangles (over the canonical points) and the canonical inside (bool, eroded)."""
    mask = np.zeros(FRAME[::-1], np.uint8)
    cv2.fillPoly(mask, [np.round(CANONICAL * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    mask = cv2.erode(mask, np.ones((2 * EDGE + 1, 2 * EDGE + 1), np.uint8))
    return delaunay(_with_ring(CANONICAL)), mask.astype(bool)


def mouth_patch(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mouth's inside in the canonical frame: (detail float32 (h, w), inside mask bool (h, w)).

    The mask is empty when the mouth is closed (inner-lip polygon under :data:`MIN_AREA` px).

    Args:
        image: HxWx3 uint8 RGB.
        landmarks: (68, 2) iBUG landmarks (x, y) of the face in ``image``.
    """
    tri, inside = _canonical()
    inner = np.asarray(landmarks, dtype=np.float64)[60:68]
    x, y = inner[:, 0], inner[:, 1]
    area = 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))
    if area < MIN_AREA:
        return np.zeros(FRAME[::-1], np.float32), np.zeros(FRAME[::-1], bool)
    # Only the mouth's box, blurred first where the frame shrinks it (no aliasing).
    src = _with_ring(inner)
    h, w = image.shape[:2]
    x0, y0 = (max(0, int(v) - 2) for v in src.min(axis=0))
    x1, y1 = (int(v) + 3 for v in src.max(axis=0))
    x1, y1 = min(w, x1), min(h, y1)
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    scale = float(np.linalg.norm(CANONICAL[4] - CANONICAL[0]) / max(np.linalg.norm(inner[4] - inner[0]), 1e-6))
    if scale < 1.0:
        grey = cv2.GaussianBlur(grey, (0, 0), 0.5 / scale)
    patch, _ = piecewise_affine(grey[..., None], src - [x0, y0], _with_ring(CANONICAL), tri,
                                (0, 0, FRAME[1], FRAME[0]), interpolation=cv2.INTER_LINEAR)
    patch = patch.reshape(FRAME[::-1]).astype(np.float32)
    # The local mean over the inside only: the lips around it would print the mouth's outline into
    # the detail.
    m = inside.astype(np.float32)
    mean = cv2.GaussianBlur(patch * m, (0, 0), DETAIL_SIGMA) / np.maximum(cv2.GaussianBlur(m, (0, 0), DETAIL_SIGMA), 1e-3)
    return patch - mean, inside.copy()


def _ncc(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64) - x.mean(), y.astype(np.float64) - y.mean()
    den = float(np.sqrt((x @ x) * (y @ y)))
    return float(x @ y / den) if den > 1e-9 else 0.0


def mouth_correlation(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                      shift: int = SHIFT) -> float | None:
    """Normalised correlation in [-1, 1] of two :func:`mouth_patch` results over the canonical
    inside, the best over shifts of up to ``shift`` canonical pixels each way (landmarks re-fitted on
    a Mask land a little off; every pair gets the same search). None when either mouth is closed."""
    if not (a[1].any() and b[1].any()):
        return None
    best = -1.0
    h, w = a[0].shape
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            ya, yb = slice(max(0, dy), h + min(0, dy)), slice(max(0, -dy), h + min(0, -dy))
            xa, xb = slice(max(0, dx), w + min(0, dx)), slice(max(0, -dx), w + min(0, -dx))
            sel = a[1][ya, xa] & b[1][yb, xb]
            if sel.any():
                best = max(best, _ncc(a[0][ya, xa][sel], b[0][yb, xb][sel]))
    return best
