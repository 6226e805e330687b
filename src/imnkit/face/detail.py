"""The Mask's fine detail made the photo's: skin grain and the eyes' sharpness (issue 27).

A composite is smoother than any photo, and one warped up onto a large face is smeared: its eyes
lose their lashes' and lids' fine lines. Two corrections, both measured against the protected
face of the same photo (``benchmarks/mask_detail.py`` reports them over the measuring set):

* :func:`match_grain` gives the warped replacement the photo's sharpness and grain. Too sharp gets
  a Gaussian blur; too smooth gets seeded grain up to the photo skin's *noise* (a robust sigma of
  the finest detail), not up to the spread of all its fine detail, which counts pores, wrinkles
  and shading edges as grain and so left the Mask's skin about twice as grainy as the photo's.
* :func:`match_eye_sharpness` sharpens (unsharp mask) or softens each eye region of the Mask, the
  eye with its lids and lashes, until its fine-to-mid detail ratio is the protected eye's.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from imnkit.face.filters import SWAP_BLUR, gaussian_blur

#: sigma (px) of the blur whose residue is taken for the photo's grain
GRAIN_SIGMA = 0.7
#: a replacement this much sharper than the photo (fine detail spread) is blurred
TOO_SHARP = 1.15
MAX_GRAIN = 8.0  # grey levels: the most grain added
#: eye regions: each eye's landmark polygon grown this much about its centre (lids and lashes in)
EYE_GROW = 2.0
#: the fine and mid scales of the eyes' sharpness ratio, as fractions of the face size
FINE, MID = 0.004, 0.02
#: the unsharp-mask amounts tried on an eye: -0.5 (half its fine detail taken off) to +2.0
AMOUNTS = (-0.5, 2.0)
#: an eye whose ratio is this close (relative) to the protected eye's is left as it is
CLOSE = 0.05
_EYES = (np.r_[36:42], np.r_[42:48])
_LUMA = np.array([[0.299, 0.587, 0.114]], np.float32)


def _luma(img: np.ndarray) -> np.ndarray:
    return cv2.transform(img.astype(np.float32), _LUMA)


def fine_detail(img: np.ndarray, sel: np.ndarray) -> float:
    """Spread of the fine detail (image minus a 1.5 px blur, grey levels) over ``sel`` (0/1 uint8)."""
    g = cv2.transform(img.astype(np.float32), np.full((1, 3), 1.0 / 3.0, np.float32))
    return float(cv2.meanStdDev(g - cv2.GaussianBlur(g, (0, 0), 1.5), mask=sel)[1][0, 0])


@functools.lru_cache(maxsize=1)
def _noise_gain() -> float:
    """What :func:`noise_sigma` reads on unit white noise: the 0.7 px residue keeps only part of it."""
    k = cv2.getGaussianKernel(int(round(GRAIN_SIGMA * 8 + 1)) | 1, GRAIN_SIGMA).ravel().astype(np.float64)
    g0 = float(k[len(k) // 2] ** 2)
    return float(np.sqrt(1.0 - 2.0 * g0 + float(np.sum(k ** 2)) ** 2))


def noise_sigma(img: np.ndarray, sel: np.ndarray) -> float:
    """The grain of ``img`` over ``sel`` (0/1 uint8): a robust sigma (1.4826 MAD) of the luma's
    0.7 px residue, as white noise of that sigma would read; pores and edges barely move it."""
    y = _luma(img)
    hp = (y - cv2.GaussianBlur(y, (0, 0), GRAIN_SIGMA))[sel.astype(bool)]
    if hp.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(hp - np.median(hp)))) / _noise_gain()


def match_grain(warped: np.ndarray, roi: np.ndarray, sel: np.ndarray, seed: int) -> np.ndarray:
    """The replacement ``warped`` made as sharp and grainy as the photo's face ``roi`` (on ``sel``,
    the skin, 0/1 uint8).

    Too sharp (a large replacement over a small face) gets a Gaussian blur; then grain is added,
    seeded, until the skin's noise is the photo's (both stop at what the photo shows, so a clean
    photo stays clean).
    """
    if cv2.countNonZero(sel) < 64:
        return warped
    want = fine_detail(roi, sel)
    out = warped
    if fine_detail(warped, sel) > TOO_SHARP * want:
        for sigma in (0.5, 0.8, 1.2, 1.8, 2.5):
            out = cv2.GaussianBlur(warped, (0, 0), sigma)
            if fine_detail(out, sel) <= TOO_SHARP * want:
                break
    want_n, have_n = noise_sigma(roi, sel), noise_sigma(out, sel)
    if have_n < want_n:
        std = min(float(np.sqrt(want_n ** 2 - have_n ** 2)), MAX_GRAIN)
        noise = np.random.default_rng(seed).normal(0.0, std, warped.shape[:2]).astype(np.float32)
        out = np.clip(np.rint(out.astype(np.float32) + noise[..., None]), 0, 255).astype(np.uint8)
    return out


def sharpness_ratio(img: np.ndarray, sel: np.ndarray, fine: float, mid: float) -> float:
    """Fine-to-mid detail ratio of the luma over ``sel`` (bool): low when smeared."""
    y = _luma(img)
    g1 = cv2.GaussianBlur(y, (0, 0), fine)
    f, m = (y - g1)[sel], (g1 - cv2.GaussianBlur(y, (0, 0), mid))[sel]
    return float(f.std() / max(float(m.std()), 1e-6)) if f.size else 0.0


def _poly(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts * 16).astype(np.int32)), 1, cv2.LINE_8, shift=4)
    return m.astype(bool)


def _grown(pts: np.ndarray, k: float) -> np.ndarray:
    c = pts.mean(axis=0)
    return c + k * (pts - c)


def _amount(patch: np.ndarray, detail: np.ndarray, sel: np.ndarray, want: float, fine: float, mid: float) -> float:
    """The unsharp amount (within ``AMOUNTS``) giving ``patch + amount * detail`` the ratio ``want``.

    Bisection: the ratio grows with the amount, but not in proportion (the added detail is partly
    blurred away again by the measure's own fine blur), so it is measured, not predicted. 0: the
    eye is already within ``CLOSE`` of ``want``.
    """
    def ratio(a: float) -> float:
        return sharpness_ratio(patch + a * detail, sel, fine, mid)

    if abs(ratio(0.0) - want) <= CLOSE * want:
        return 0.0
    lo, hi = AMOUNTS
    if ratio(hi) <= want:
        return hi
    if ratio(lo) >= want:
        return lo
    for _ in range(8):
        mid_a = 0.5 * (lo + hi)
        if ratio(mid_a) < want:
            lo = mid_a
        else:
            hi = mid_a
    return 0.5 * (lo + hi)


def match_eye_sharpness(roi: np.ndarray, w_rgb: np.ndarray, prot_local: np.ndarray, target_local: np.ndarray,
                        size: float) -> np.ndarray:
    """``w_rgb`` with each eye region (lids and lashes in) as sharp as the protected face's.

    ``roi``: the photo's box, ``prot_local`` / ``target_local``: the protected and target
    landmarks in box coordinates, ``size``: the face size (px). The fine detail (below
    ``FINE`` x size) of the Mask's eye is boosted (unsharp mask) when smeared or cut when too
    sharp, by the amount that gives it the protected eye's fine-to-mid detail ratio (within
    ``AMOUNTS``), faded in over the grown eye polygon.
    """
    fine, mid = max(0.6, FINE * size), max(1.5, MID * size)
    h, w = roi.shape[:2]
    out = w_rgb
    for idx in _EYES:
        p_pts, t_pts = _grown(prot_local[idx], EYE_GROW), _grown(target_local[idx], EYE_GROW)
        pts = np.vstack([p_pts, t_pts])
        # Each eye on its own box (both layouts plus the mid-scale blur's reach).
        x0, y0 = np.maximum(np.floor(pts.min(axis=0) - 3 * mid).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(pts.max(axis=0) + 3 * mid + 1).astype(int), [w, h])
        if x1 - x0 < 8 or y1 - y0 < 8:
            continue
        off = np.array([x0, y0], np.float64)
        p_sel, t_sel = _poly((y1 - y0, x1 - x0), p_pts - off), _poly((y1 - y0, x1 - x0), t_pts - off)
        if p_sel.sum() < 24 or t_sel.sum() < 24:
            continue
        want = sharpness_ratio(roi[y0:y1, x0:x1], p_sel, fine, mid)
        patch = out[y0:y1, x0:x1].astype(np.float32)
        soft = gaussian_blur(t_sel.astype(np.float32), fine * 2, **SWAP_BLUR)[..., None]
        fine_part = soft * (patch - cv2.GaussianBlur(patch, (0, 0), fine))
        amount = _amount(patch, fine_part, t_sel, want, fine, mid)
        if amount == 0.0:
            continue
        patch += amount * fine_part
        if out is w_rgb:
            out = w_rgb.copy()
        out[y0:y1, x0:x1] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
    return out
