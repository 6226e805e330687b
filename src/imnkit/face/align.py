"""Similarity alignment of face landmarks to the ArcFace 112x112 template.

Convention:
    An affine ``M`` is a float32 array of shape (2, 3) that maps a *source* pixel ``(x, y)`` of
    the photo to *destination* pixels of the aligned crop: ``[u, v] = M @ [x, y, 1]``. Pixel
    coordinates are ``(x, y)`` = (column, row) with the centre of the top-left pixel at
    ``(0, 0)``; this is what ``cv2.warpAffine(img, M, (w, h))`` expects, so
    ``cv2.warpAffine(photo, M, (112, 112))`` gives the aligned crop directly.
"""

from __future__ import annotations

import numpy as np

from imnkit.errors import UsageError

# ArcFace / insightface 5-point template for a 112x112 crop, in (x, y) pixels:
# left eye, right eye (as seen in the image), nose tip, left mouth corner, right mouth corner.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ARCFACE_SIZE = 112

# Index ranges of the iBUG 68-point scheme used by dlib.
JAW = slice(0, 17)
RIGHT_BROW = slice(17, 22)  # image-left brow
LEFT_BROW = slice(22, 27)
NOSE = slice(27, 36)
EYE_IMAGE_LEFT = slice(36, 42)
EYE_IMAGE_RIGHT = slice(42, 48)
MOUTH_OUTER = slice(48, 60)
MOUTH_INNER = slice(60, 68)


def arcface_template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The 5-point template scaled to a ``size`` x ``size`` crop (112 gives the original)."""
    if size <= 0:
        raise UsageError(f"template size must be positive, got {size}")
    return (ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)).astype(np.float32)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """Reduce 68 iBUG landmarks to the 5 ArcFace points (eye centres, nose tip, mouth corners).

    Order matches :data:`ARCFACE_TEMPLATE`: image-left eye first, so the transform never needs
    a reflection.
    """
    pts = np.asarray(landmarks68, dtype=np.float64)
    if pts.shape != (68, 2):
        raise UsageError(f"expected landmarks of shape (68, 2), got {tuple(pts.shape)}")
    out = np.stack(
        [
            pts[EYE_IMAGE_LEFT].mean(axis=0),
            pts[EYE_IMAGE_RIGHT].mean(axis=0),
            pts[30],
            pts[48],
            pts[54],
        ]
    )
    return out.astype(np.float32)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) src -> dst.

    Umeyama (1991). Returns the (2, 3) float64 matrix ``M`` with ``dst ~ M @ [src, 1]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or src.shape[0] < 2:
        raise UsageError(
            f"umeyama needs two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}"
        )
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / len(src)
    if var_s <= 1e-12:
        raise UsageError("the landmarks are all at the same place: no face geometry to align")
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0  # forbid a reflection
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) ``(x, y)`` points with a (2, 3) affine."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine (maps template pixels back to photo pixels)."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3):
        raise UsageError(f"an affine must have shape (2, 3), got {m.shape}")
    a = m[:, :2]
    det = float(np.linalg.det(a))
    if abs(det) < 1e-12 or not np.isfinite(det):
        raise UsageError("the affine is singular and cannot be inverted")
    ai = np.linalg.inv(a)
    out = np.zeros((2, 3), dtype=np.float64)
    out[:, :2] = ai
    out[:, 2] = -ai @ m[:, 2]
    return out


def template_affine(points5: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The (2, 3) float32 similarity mapping photo pixels to the ``size``-px ArcFace crop."""
    return umeyama(points5, arcface_template(size)).astype(np.float32)


def alignment_error(points5: np.ndarray, affine: np.ndarray, size: int = ARCFACE_SIZE) -> float:
    """RMS distance, in template pixels, between the mapped 5 points and the template.

    A face whose landmarks are far from a plausible frontal-ish configuration has a large
    error, which is why detection uses it to flag dubious faces.
    """
    mapped = apply_affine(affine, points5)
    return float(np.sqrt(((mapped - arcface_template(size)) ** 2).sum(axis=1).mean()))
