"""Aligned face crops and soft paste-back: the geometry shared by the Hub swap and the enhancer.

A face is given by its 5 landmarks; a similarity transform maps them onto a template of an
``S`` x ``S`` crop; a network works on the crop; the result is warped back with the exact
inverse transform and blended into the photo with a soft mask that is zero at the crop's
border. Only the pixels where that mask is non-zero are written, and their bounding box is
returned, so outside the returned boxes the output equals the input bit for bit.

Convention:
    An affine ``M`` is a float64 array of shape (2, 3) mapping a *source* photo pixel
    ``(x, y)`` to a *crop* pixel ``(u, v) = M @ [x, y, 1]``. Coordinates are ``(x, y)`` =
    (column, row) with the centre of the top-left pixel at ``(0, 0)``, which is what
    ``cv2.warpAffine(photo, M, (S, S))`` expects (no ``WARP_INVERSE_MAP``). Its inverse
    (:func:`invert_affine`) maps crop pixels back to photo pixels.

    Landmarks are float32 ``(5, 2)`` arrays of photo ``(x, y)`` pixels in the order: image-left
    eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner.

    A box is ``(y0, x0, y1, x1)`` ints with exclusive ends: ``img[y0:y1, x0:x1]``. An empty box
    has ``y0 == y1`` or ``x0 == x1``.

Resampling: images are warped bicubically both ways (a crop-and-paste round trip of a face
keeps ~0.3 levels mean error where bilinear, as upstream uses, smooths it to ~2 levels; the
overshoot is clipped), masks bilinearly. Where a warp shrinks (a crop larger than the face it
came from, or a face larger than the crop) the source is first low-passed with a Gaussian of
sigma ``(k - 1) / 2`` for a shrink factor ``k`` (scikit-image's anti-aliasing rule), so small
faces do not alias when a 224/512 px result is pasted back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch import nn

from imnkit.face.align import apply_affine, invert_affine, umeyama
from imnkit.face.filters import gaussian_blur
from imnkit.errors import DeviceError, UsageError

__all__ = [
    "Box",
    "apply_affine",
    "check_landmarks",
    "check_model_device",
    "check_rgb",
    "eval_mode",
    "invert_affine",
    "paste_crop",
    "similarity",
    "soft_rect_mask",
    "warp_crop",
]

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), exclusive ends

#: mask values below this are treated as zero (they cannot change an 8-bit pixel by >= 0.5)
MASK_FLOOR = 1.0 / 512.0


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------


def check_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check the (H, W, 3) uint8 RGB contract; returns a C-contiguous array (no copy if already)."""
    if not isinstance(image, np.ndarray):
        raise UsageError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(
            f"{name} must be an HxWx3 uint8 RGB array, got shape {tuple(image.shape)} dtype {image.dtype}",
            hint="convert grey or RGBA photos to RGB uint8 first",
        )
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise UsageError(f"{name} is too small: shape {tuple(image.shape)}")
    return np.ascontiguousarray(image)


def check_landmarks(points: np.ndarray, name: str = "landmarks") -> np.ndarray:
    """Check one face's 5 landmarks: finite (5, 2) numbers; returns them as float64."""
    pts = np.asarray(points)
    if pts.shape != (5, 2) or not np.issubdtype(pts.dtype, np.number):
        raise UsageError(f"{name} must be a (5, 2) array of (x, y) pixels, got shape {tuple(pts.shape)}")
    pts = pts.astype(np.float64)
    if not np.isfinite(pts).all():
        raise UsageError(f"{name} contains NaN or infinite coordinates")
    return pts


# --------------------------------------------------------------------------------------
# affine helpers
# --------------------------------------------------------------------------------------


# One implementation of the geometry for the whole face package (Umeyama similarity, affine maps).
similarity = umeyama


def _scale(m: np.ndarray) -> float:
    """Linear scale of an affine (sqrt |det|): output pixels per input pixel."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(m, dtype=np.float64)[:, :2]))))


def _antialias_sigma(m: np.ndarray) -> float:
    """Gaussian sigma (input pixels) to low-pass before warping with ``m`` (0 when it enlarges)."""
    shrink = 1.0 / max(_scale(m), 1e-12)
    return max(0.0, (shrink - 1.0) / 2.0)


def _footprint(m_inv: np.ndarray, size: int, shape: tuple[int, int], margin: int) -> Box:
    """Photo box covering the crop square mapped by ``m_inv`` (crop -> photo), plus ``margin``, clipped."""
    h, w = shape
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    pts = apply_affine(m_inv, corners)
    x0 = int(np.floor(pts[:, 0].min())) - margin
    y0 = int(np.floor(pts[:, 1].min())) - margin
    x1 = int(np.ceil(pts[:, 0].max())) + 1 + margin
    y1 = int(np.ceil(pts[:, 1].max())) + 1 + margin
    return max(0, y0), max(0, x0), min(h, y1), min(w, x1)


# --------------------------------------------------------------------------------------
# crop and paste
# --------------------------------------------------------------------------------------


def warp_crop(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """The aligned ``size`` x ``size`` crop of ``image`` under ``affine`` (photo pixel -> crop pixel).

    Returns float32 (size, size, 3) RGB in [0, 255] (not rounded). Crop pixels that fall outside
    the photo repeat its border pixels (no black wedges in front of the network). Only the
    photo region under the crop is read, low-passed first when the crop shrinks the face.
    """
    image = check_rgb(image)
    m = np.asarray(affine, dtype=np.float64)
    if m.shape != (2, 3):
        raise UsageError(f"an affine must have shape (2, 3), got {m.shape}")
    if size < 8:
        raise UsageError(f"crop size must be at least 8 px, got {size}")
    sigma = _antialias_sigma(m)
    m_inv = invert_affine(m)
    y0, x0, y1, x1 = _footprint(m_inv, size, image.shape[:2], margin=int(np.ceil(3 * sigma)) + 2)
    if y1 <= y0 or x1 <= x0:
        # the crop lies wholly outside the photo: repeat the nearest border pixels
        y0, x0 = min(max(y0, 0), image.shape[0] - 1), min(max(x0, 0), image.shape[1] - 1)
        y1, x1 = y0 + 1, x0 + 1
    src = gaussian_blur(image[y0:y1, x0:x1].astype(np.float32), sigma)
    m_roi = m.copy()
    m_roi[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)  # ROI pixel -> crop pixel
    crop = cv2.warpAffine(src, m_roi, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(crop, 0.0, 255.0, out=crop)


def soft_rect_mask(size: int, inset: int) -> np.ndarray:
    """A (size, size) float32 blend mask: 0 on the border, rising to 1 at ``2 * inset`` px inside.

    A square of ones eroded by ``inset`` px, blurred by a Gaussian of sigma ``inset / 3``
    truncated at ``inset`` px, so it is exactly 0 on the outermost pixels and has no hard edge.
    This is SimSwap's paste-back mask (``reverse2original.py``: white crop, 40x40 erosion, 41x41
    Gaussian) expressed in crop pixels, so it scales with the face instead of the photo.
    """
    if size < 8 or inset < 1 or 2 * inset >= size:
        raise UsageError(f"soft mask needs size >= 8 and 1 <= inset < size / 2, got size {size}, inset {inset}")
    mask = np.zeros((size, size), dtype=np.float32)
    mask[inset:size - inset, inset:size - inset] = 1.0
    k = 2 * inset + 1
    mask = cv2.GaussianBlur(mask, (k, k), sigmaX=inset / 3.0, sigmaY=inset / 3.0, borderType=cv2.BORDER_CONSTANT)
    mask[mask < MASK_FLOOR] = 0.0
    return mask


def paste_crop(
    out: np.ndarray,
    crop: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
) -> Box:
    """Warp ``crop`` back into ``out`` (in place) with the inverse of ``affine``, blended by ``mask``.

    Args:
        out: (H, W, 3) uint8 RGB photo, modified in place.
        crop: (S, S, 3) float RGB in [0, 255] (the network's result in crop pixels).
        mask: (S, S) float in [0, 1], 0 on the crop border (see :func:`soft_rect_mask`).
        affine: (2, 3) photo pixel -> crop pixel (the affine the crop was made with).

    Returns:
        The box of the photo pixels that were written (mask > 0 after warping); every pixel
        outside it is untouched. Empty when the crop does not overlap the photo.
    """
    if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
        raise UsageError(f"out must be an HxWx3 uint8 array, got shape {tuple(out.shape)} dtype {out.dtype}")
    size = crop.shape[0]
    if crop.shape != (size, size, 3) or mask.shape != (size, size):
        raise UsageError(f"crop (S, S, 3) and mask (S, S) must agree, got {tuple(crop.shape)} and {tuple(mask.shape)}")
    m_inv = invert_affine(affine)  # crop pixel -> photo pixel
    y0, x0, y1, x1 = _footprint(m_inv, size, out.shape[:2], margin=2)
    if y1 <= y0 or x1 <= x0:
        return (0, 0, 0, 0)
    m_roi = m_inv.copy()
    m_roi[:, 2] -= (x0, y0)  # crop pixel -> ROI pixel
    dsize = (x1 - x0, y1 - y0)
    src = gaussian_blur(np.ascontiguousarray(crop, dtype=np.float32), _antialias_sigma(m_inv))
    face = cv2.warpAffine(src, m_roi, dsize, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(np.ascontiguousarray(mask, dtype=np.float32), m_roi, dsize,
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    alpha[alpha < MASK_FLOOR] = 0.0
    np.clip(alpha, 0.0, 1.0, out=alpha)
    ys, xs = np.nonzero(alpha)
    if len(ys) == 0:
        return (0, 0, 0, 0)
    by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    a = alpha[by0:by1, bx0:bx1, None]
    region = out[y0 + by0:y0 + by1, x0 + bx0:x0 + bx1]
    blended = region.astype(np.float32) * (1.0 - a) + np.clip(face[by0:by1, bx0:bx1], 0.0, 255.0) * a
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    # write only where the mask is non-zero: zero-mask pixels keep their exact value
    region[...] = np.where(a > 0, blended, region)
    return (int(y0 + by0), int(x0 + bx0), int(y0 + by1), int(x0 + bx1))


# --------------------------------------------------------------------------------------
# running the networks
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode (BatchNorm statistics, no dropout) without autograd, restoring
    its mode after. ``no_grad`` rather than ``inference_mode``, so the tensors made (e.g. identity
    latents) stay usable by callers that later need autograd."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def check_model_device(model: nn.Module, device: torch.device, what: str) -> None:
    """Raise :class:`DeviceError` when ``model``'s first parameter/buffer is not on ``device``.

    ``cuda`` (no index) accepts any CUDA device; a model with no tensors is accepted.
    """
    for t in (*model.parameters(), *model.buffers()):
        same = t.device == device or (t.device.type == device.type and device.index is None)
        if not same:
            raise DeviceError(
                f"the {what} model is on {t.device} but device {device} was asked for",
                hint=f"move the model with model.to('{device}') before calling",
            )
        return
