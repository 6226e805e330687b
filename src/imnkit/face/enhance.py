"""Face enhancement: GPEN-BFR on aligned crops (full quality), or a light classical pass (offline default).

GPEN (:func:`gpen_enhance`) follows upstream's ``FaceEnhancement.process``
(https://github.com/yangxy/GPEN ``face_enhancement.py``, ``align_faces.py``,
``face_model/face_gan.py``; read for behaviour only, this is an independent implementation;
GPEN weights are research / non-commercial, see :mod:`imnkit.nets.gpen`):

1. **Alignment**: the 5 landmarks are fitted (least-squares similarity) to GPEN's template,
   ``get_reference_facial_points((S, S), inner_padding_factor=0.25, outer_padding=(0, 0),
   default_square=True)``, which works out to the insightface ArcFace 112 px template padded
   by 28 px on every side and scaled to ``S``: ``(arcface_112 + 28) * S / 168``
   (:func:`gpen_template`).
2. **Restore**: RGB ``/255``, ``(x - 0.5) / 0.5`` to [-1, 1], the generator's first output,
   ``* 0.5 + 0.5`` and clipped to [0, 1].
3. **Paste back** with the inverse affine and a soft mask. Upstream blends with a face-parsing
   mask (a parsing network not shipped here) or, without it, a rectangle inset 26 / 512 px and
   blurred twice (101 px, sigma 11); here a square inset by ``S / 16`` px with a Gaussian
   truncated at the inset (:func:`imnkit.face.paste.soft_rect_mask`), which is exactly zero on
   the crop border, so every changed pixel lies in the returned box. Upstream's 3 x 3 blur of
   small faces (< 100 px) is replaced by the paste's general anti-aliasing (a Gaussian sized to
   the shrink factor, see :mod:`imnkit.face.paste`). The optional super-resolution of the
   background (``--use_sr``) is not done: only faces change.

The classical pass (:func:`classical_enhance`) is an unsharp mask on luma inside each face box,
faded to nothing at the box edges; see its docstring.

Convention:
    An affine is a float64 (2, 3) ``M`` mapping a photo pixel ``(x, y)`` to a crop pixel
    ``(u, v) = M @ [x, y, 1]`` (pixel centres at integers; ``cv2.warpAffine(photo, M, (S, S))``
    gives the crop). Landmarks are (5, 2) photo ``(x, y)`` pixels: image-left eye, image-right
    eye, nose tip, image-left mouth corner, image-right mouth corner. Boxes are
    ``(y0, x0, y1, x1)`` with exclusive ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from imnkit.errors import UsageError
from imnkit.face.align import ARCFACE_TEMPLATE
from imnkit.metrics import BT601_WEIGHTS
from imnkit.face.paste import (
    Box,
    check_landmarks,
    check_model_device,
    check_rgb,
    eval_mode,
    paste_crop,
    similarity,
    soft_rect_mask,
    warp_crop,
)

__all__ = [
    "GPEN_SIZES",
    "classical_enhance",
    "gpen_affine",
    "gpen_enhance",
    "gpen_mask",
    "gpen_template",
]

GPEN_SIZES = (256, 512)

_ARCFACE_112 = ARCFACE_TEMPLATE.astype(np.float64)


def gpen_template(size: int) -> np.ndarray:
    """GPEN's 5-point template for a ``size`` x ``size`` crop, float64 (5, 2) ``(x, y)`` pixels."""
    if size < 8:
        raise UsageError(f"GPEN crop size must be at least 8 px, got {size}")
    return (_ARCFACE_112 + 28.0) * (size / 168.0)


def gpen_affine(points5: np.ndarray, size: int) -> np.ndarray:
    """The float64 (2, 3) affine, photo pixel -> GPEN ``size`` px crop pixel, for one face.

    Convention:
        ``(u, v) = M @ [x, y, 1]`` maps photo pixel ``(x, y)`` to crop pixel ``(u, v)``.
    """
    return similarity(check_landmarks(points5), gpen_template(size))


def gpen_mask(size: int) -> np.ndarray:
    """The soft paste-back mask of a GPEN crop, (size, size) float32, zero on the border."""
    return soft_rect_mask(size, max(1, size // 16))


def _model_size(model: nn.Module, size: int) -> None:
    if size not in GPEN_SIZES:
        raise UsageError(f"GPEN size must be one of {GPEN_SIZES}, got {size}")
    own = getattr(model, "size", None)
    if isinstance(own, int) and own != size:
        raise UsageError(f"the GPEN model works at {own} px but size {size} was asked for",
                         hint=f"pass size={own}, or load the GPEN-BFR-{size} weights")


def gpen_enhance(
    image: np.ndarray,
    faces_lmk5: Sequence[np.ndarray],
    model: nn.Module,
    size: int = 512,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, list[Box]]:
    """Restore every face of ``image`` with GPEN-BFR and paste it back softly.

    Args:
        image: (H, W, 3) uint8 RGB photo (not modified).
        faces_lmk5: one (5, 2) landmark array per face, photo ``(x, y)`` pixels.
        model: GPEN ``FullGenerator`` (:func:`imnkit.nets.gpen.gpen_bfr_256` / ``_512``) on
            ``device``, ``forward((B, 3, S, S) in [-1, 1]) -> image`` (or a tuple whose first
            element is the image); run in eval mode, its mode restored afterwards.
        size: the model's crop size, 256 or 512.
        device: where to run.

    Returns:
        ``(image, boxes)``: the enhanced photo, (H, W, 3) uint8 RGB, and one box per face
        ``(y0, x0, y1, x1)`` (exclusive ends) holding every pixel that face's paste wrote;
        outside their union the photo is unchanged bit for bit.

    Convention:
        Each face's affine is :func:`gpen_affine` (photo pixel -> crop pixel); the result is
        pasted back with its exact inverse. Faces are restored from the unmodified photo and
        pasted one after another.
    """
    image = check_rgb(image)
    device = torch.device(device)
    _model_size(model, size)
    faces = [check_landmarks(p, f"landmarks of face {i}") for i, p in enumerate(faces_lmk5)]
    out = image.copy()
    if not faces:
        return out, []
    check_model_device(model, device, "GPEN")
    mask = gpen_mask(size)
    jobs = []
    for pts in faces:
        m = gpen_affine(pts, size)
        jobs.append((warp_crop(image, m, size), m))
    boxes: list[Box] = []
    with eval_mode(model):
        for crop, m in jobs:
            x = torch.from_numpy(crop).permute(2, 0, 1)[None].to(device)
            x = (x / 255.0 - 0.5) / 0.5
            y = model(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            if y.shape != (1, 3, size, size):
                raise UsageError(f"the GPEN model returned shape {tuple(y.shape)}, expected (1, 3, {size}, {size})")
            y = (y.float() * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0
            boxes.append(paste_crop(out, y[0].permute(1, 2, 0).cpu().numpy(), mask, m))
    return out, boxes


# --------------------------------------------------------------------------------------
# classical pass
# --------------------------------------------------------------------------------------

_LUMA = np.array(BT601_WEIGHTS, dtype=np.float32)


def _ramp(n: int, feather: int) -> np.ndarray:
    """1-D weight over ``n`` pixels: 0 at both ends, smoothstep up to 1 over ``feather`` px."""
    i = np.arange(n, dtype=np.float32)
    d = np.minimum(i, n - 1 - i)  # distance to the nearer end, 0 on the end pixels
    t = np.clip(d / max(feather, 1), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def classical_enhance(
    image: np.ndarray,
    boxes: Sequence[Box],
    amount: float = 0.5,
    *,
    sigma: float | None = None,
    threshold: float = 1.0,
    feather: float = 0.12,
) -> np.ndarray:
    """A light, deterministic sharpening of the face boxes: unsharp mask on luma with soft edges.

    For each box (clipped to the photo, empty boxes skipped), with ``s`` its shorter side:

    - ``Y`` = BT.601 luma of the box (read with ``3 * sigma`` px of context where the photo has it);
    - ``detail = Y - GaussianBlur(Y, sigma)``, ``sigma`` = ``max(1, s / 128)`` px unless given;
    - ``detail`` is soft-thresholded by ``threshold`` 8-bit levels (``sign(d) * max(|d| - t, 0)``)
      so flat, noisy skin and JPEG blocks are not amplified;
    - ``delta = amount * w * detail`` is added to R, G and B alike (so luma rises by ``delta``
      and the colour differences R-Y, B-Y are kept), with ``w`` a separable smoothstep weight that
      is 0 on the box border and 1 from ``feather * s`` px inside;
    - rounded and clipped to uint8.

    Boxes are processed in order on the running result. ``amount=0`` returns an exact copy; pixels
    outside the boxes are never written.

    Args:
        image: (H, W, 3) uint8 RGB photo (not modified).
        boxes: ``(y0, x0, y1, x1)`` face boxes, exclusive ends.
        amount: strength in [0, 2]; 0.5 is mild, 1 a classic unsharp mask.
        sigma: blur radius in px (default from the box size).
        threshold: detail below this many 8-bit levels is left alone (>= 0).
        feather: width of the fade at the box edges, as a fraction of the shorter side (0..0.5).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    image = check_rgb(image)
    if not (0.0 <= float(amount) <= 2.0):
        raise UsageError(f"amount must be in [0, 2], got {amount}")
    if sigma is not None and not (0.3 <= float(sigma) <= 20.0):
        raise UsageError(f"sigma must be in [0.3, 20] px, got {sigma}")
    if threshold < 0:
        raise UsageError(f"threshold must be >= 0 levels, got {threshold}")
    if not (0.0 <= feather <= 0.5):
        raise UsageError(f"feather must be in [0, 0.5], got {feather}")
    out = image.copy()
    if amount == 0:
        return out
    h, w = image.shape[:2]
    for box in boxes:
        if len(box) != 4:
            raise UsageError(f"a box must be (y0, x0, y1, x1), got {len(box)} values")
        y0, x0, y1, x1 = (int(v) for v in box)
        y0, x0, y1, x1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
        if y1 - y0 < 3 or x1 - x0 < 3:
            continue
        s = min(y1 - y0, x1 - x0)
        sg = float(sigma) if sigma is not None else max(1.0, s / 128.0)
        pad = int(np.ceil(3 * sg)) + 1
        py0, px0, py1, px1 = max(0, y0 - pad), max(0, x0 - pad), min(h, y1 + pad), min(w, x1 + pad)
        ctx = out[py0:py1, px0:px1].astype(np.float32)
        luma = ctx @ _LUMA
        blurred = cv2.GaussianBlur(luma, (0, 0), sigmaX=sg, sigmaY=sg, borderType=cv2.BORDER_REFLECT_101)
        detail = (luma - blurred)[y0 - py0:y1 - py0, x0 - px0:x1 - px0]
        detail = np.sign(detail) * np.maximum(np.abs(detail) - threshold, 0.0)
        fw = int(round(feather * s))
        weight = _ramp(y1 - y0, fw)[:, None] * _ramp(x1 - x0, fw)[None, :]
        delta = (float(amount) * weight * detail)[..., None]
        region = ctx[y0 - py0:y1 - py0, x0 - px0:x1 - px0]
        out[y0:y1, x0:x1] = np.clip(np.rint(region + delta), 0, 255).astype(np.uint8)
    return out
