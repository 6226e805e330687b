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

The classical pass (the offline default) lives in :mod:`imnkit.face.sharpen` (no torch).

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
