"""SimSwap 224 face swap, as upstream's whole-image inference does it: align, swap, paste back.

Upstream: https://github.com/neuralchen/SimSwap (``test_wholeimage_swapsingle.py``,
``insightface_func/face_detect_crop_single.py``, ``insightface_func/utils/face_align_ffhqandnewarc.py``,
``util/reverse2original.py``), read for behaviour only; this is an independent implementation.
Licence of the SimSwap weights: non-commercial research use only (see :mod:`imnkit.nets.simswap`).

What upstream does, and what this module does the same way:

1. **Alignment** (``Face_detect_crop.get(img, 224)`` with the default ``mode='None'``): the 5
   landmarks are fitted (least-squares similarity) to each of five pose-specific 112 px
   templates (profile-left, left, frontal, right, profile-right) scaled by 224 / 112, and the
   template with the smallest summed point distance wins (:data:`SIMSWAP_TEMPLATES_112`,
   ``template="simswap"``). The single insightface ArcFace template (``arcface_src``) is
   commented out upstream; it is available here as ``template="arcface"``.
2. **Identity latent** of the replacement face: its 224 aligned crop, RGB in [0, 1], ImageNet
   mean/std normalised, downsampled to 112 x 112 (upstream inference uses
   ``F.interpolate(scale_factor=0.5)``, i.e. nearest; upstream *training* uses bicubic: both are
   offered, ``downsample=``), through ArcFace, L2-normalised.
3. **Swap**: the target's 224 aligned crop, RGB in [0, 1] (no mean/std), with the latent, through
   the generator, which returns RGB in [0, 1].
4. **Paste back**: the result is warped into the photo with the inverse affine and blended with
   a soft mask: upstream warps a white crop back, erodes it by a 40 x 40 kernel and blurs it by a
   41 x 41 Gaussian *in photo pixels*; here the same mask (erode 20 px, Gaussian truncated at
   20 px, sigma 20 / 3) is built *in 224-crop pixels* (:func:`imnkit.face.paste.soft_rect_mask`)
   and warped back, so it scales with the face. Upstream's optional face-parsing mask
   (``--use_mask``) is not implemented (it needs a BiSeNet parsing model). Faces are blended one
   after another, each crop taken from the unmodified photo, as upstream does.

Differences from upstream, on purpose: crops are warped in float (upstream rounds the crop to
8 bits first), crop pixels outside the photo repeat the border instead of black, and warps
that shrink are low-passed first (see :mod:`imnkit.face.paste`). No watermark is added.

Convention:
    An affine is a float64 (2, 3) ``M`` mapping a photo pixel ``(x, y)`` to a crop pixel
    ``(u, v) = M @ [x, y, 1]`` (pixel centres at integers; ``cv2.warpAffine(photo, M, (S, S))``
    gives the crop). Landmarks are (5, 2) photo ``(x, y)`` pixels: image-left eye, image-right
    eye, nose tip, image-left mouth corner, image-right mouth corner. Boxes are
    ``(y0, x0, y1, x1)`` with exclusive ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imnkit.face.align import ARCFACE_TEMPLATE
from imnkit.errors import UsageError
from imnkit.face.paste import (
    Box,
    apply_affine,
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
    "ARCFACE_TEMPLATE_112",
    "CROP_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SIMSWAP_TEMPLATES_112",
    "Template",
    "aligned_crop",
    "identity_latent",
    "identity_latent_from_crop",
    "simswap_affine",
    "simswap_faces",
    "simswap_mask",
    "swap_templates",
]

Template = Literal["simswap", "arcface"]
Downsample = Literal["nearest", "bicubic"]

CROP_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: insightface's ArcFace 5-point template for a 112 x 112 crop, (x, y) pixels.
ARCFACE_TEMPLATE_112 = ARCFACE_TEMPLATE.astype(np.float64)

#: SimSwap's five pose-specific 112 px templates (insightface "newarc" set), in the order
#: profile-left, left, frontal, right, profile-right; the best-fitting one is used per face.
SIMSWAP_TEMPLATES_112 = np.array(
    [
        [[51.642, 50.115], [57.617, 49.990], [35.740, 69.007], [51.157, 89.050], [57.025, 89.702]],
        [[45.031, 50.118], [65.568, 50.872], [39.677, 68.111], [45.177, 86.190], [64.246, 86.758]],
        [[39.730, 51.138], [72.270, 51.138], [56.000, 68.493], [42.463, 87.010], [69.537, 87.010]],
        [[46.845, 50.872], [67.382, 50.118], [72.737, 68.111], [48.167, 86.758], [67.236, 86.190]],
        [[54.796, 49.990], [60.771, 50.115], [76.673, 69.007], [55.388, 89.702], [61.257, 89.050]],
    ],
    dtype=np.float64,
)

# paste-back mask: upstream's 20 px erosion / 20 px Gaussian radius, in 224-crop pixels
_MASK_INSET_224 = 20


def swap_templates(size: int = CROP_SIZE, template: Template = "simswap") -> np.ndarray:
    """Candidate templates ``(P, 5, 2)`` for a ``size`` px crop (P = 5 for simswap, 1 for arcface)."""
    if template == "simswap":
        base = SIMSWAP_TEMPLATES_112
    elif template == "arcface":
        base = ARCFACE_TEMPLATE_112[None]
    else:
        raise UsageError(f"unknown alignment template {template!r}", hint="use 'simswap' or 'arcface'")
    if size < 8:
        raise UsageError(f"crop size must be at least 8 px, got {size}")
    return base * (size / 112.0)


def simswap_affine(points5: np.ndarray, size: int = CROP_SIZE, template: Template = "simswap") -> np.ndarray:
    """The float64 (2, 3) affine, photo pixel -> ``size`` px aligned-crop pixel, for one face.

    Fits a similarity to every candidate template and keeps the one with the smallest sum of
    point distances (upstream's ``estimate_norm``).

    Convention:
        ``(u, v) = M @ [x, y, 1]`` maps photo pixel ``(x, y)`` to crop pixel ``(u, v)``.
    """
    pts = check_landmarks(points5)
    best, best_err = None, np.inf
    for tpl in swap_templates(size, template):
        m = similarity(pts, tpl)
        err = float(np.linalg.norm(apply_affine(m, pts) - tpl, axis=1).sum())
        if err < best_err:
            best, best_err = m, err
    assert best is not None
    return best


def aligned_crop(
    image: np.ndarray, points5: np.ndarray, size: int = CROP_SIZE, template: Template = "simswap"
) -> tuple[np.ndarray, np.ndarray]:
    """The aligned crop of one face and its affine.

    Returns:
        ``(crop, affine)``: crop float32 (size, size, 3) RGB in [0, 255]; affine float64 (2, 3),
        photo pixel -> crop pixel (see the module's Convention).
    """
    image = check_rgb(image)
    m = simswap_affine(points5, size, template)
    return warp_crop(image, m, size), m


def simswap_mask(size: int = CROP_SIZE) -> np.ndarray:
    """SimSwap's soft paste-back mask in crop pixels, (size, size) float32 in [0, 1]."""
    return soft_rect_mask(size, max(1, round(_MASK_INSET_224 * size / CROP_SIZE)))


# --------------------------------------------------------------------------------------
# torch plumbing
# --------------------------------------------------------------------------------------


def _to_tensor(crop: np.ndarray, device: torch.device) -> torch.Tensor:
    """(S, S, 3) float [0, 255] -> (1, 3, S, S) float32 [0, 1] on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)).permute(2, 0, 1)[None]
    return (t / 255.0).clamp_(0.0, 1.0).to(device)


def _to_crop(t: torch.Tensor) -> np.ndarray:
    """(1, 3, S, S) float [0, 1] -> (S, S, 3) float32 [0, 255] on the CPU."""
    return (t[0].detach().float().clamp(0.0, 1.0) * 255.0).permute(1, 2, 0).cpu().numpy()


# --------------------------------------------------------------------------------------
# identity latent
# --------------------------------------------------------------------------------------


def identity_latent_from_crop(
    arcface: nn.Module,
    crop: np.ndarray,
    device: str | torch.device = "cpu",
    *,
    downsample: Downsample = "nearest",
) -> torch.Tensor:
    """SimSwap identity latent of an already aligned 224 crop (uint8 or float in [0, 255], RGB).

    ImageNet-normalise, downsample 224 -> 112 (``"nearest"`` = upstream inference, ``"bicubic"``
    = upstream training), ArcFace, L2-normalise. Returns float32 (1, 512) on ``device``.
    """
    device = torch.device(device)
    crop = np.asarray(crop)
    if crop.shape != (CROP_SIZE, CROP_SIZE, 3):
        raise UsageError(f"the identity crop must be ({CROP_SIZE}, {CROP_SIZE}, 3), got {tuple(crop.shape)}")
    if downsample not in ("nearest", "bicubic"):
        raise UsageError(f"unknown downsample {downsample!r}", hint="use 'nearest' or 'bicubic'")
    check_model_device(arcface, device, "ArcFace")
    x = _to_tensor(crop.astype(np.float32), device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if downsample == "nearest":
        x = F.interpolate(x, scale_factor=0.5, mode="nearest")
    else:
        x = F.interpolate(x, size=(112, 112), mode="bicubic", align_corners=False)
    with eval_mode(arcface):
        emb = arcface(x)
    if emb.ndim != 2 or emb.shape != (1, 512):
        raise UsageError(f"the ArcFace model returned shape {tuple(emb.shape)}, expected (1, 512)")
    emb = emb.float()
    if not torch.isfinite(emb).all() or float(emb.norm()) == 0.0:
        raise UsageError("the ArcFace embedding is zero or not finite", hint="check the ArcFace weights")
    return F.normalize(emb, p=2, dim=1)


def identity_latent(
    arcface: nn.Module,
    replace_img: np.ndarray,
    replace_lmk5: np.ndarray,
    device: str | torch.device = "cpu",
    *,
    template: Template = "simswap",
    downsample: Downsample = "nearest",
) -> torch.Tensor:
    """The L2-normalised SimSwap identity latent (1, 512) of the replacement face.

    Args:
        arcface: SimSwap's ArcFace (:func:`imnkit.nets.arcface.arcface_ir_se101`), weights
            loaded, on ``device``; run in eval mode (its mode is restored afterwards).
        replace_img: (H, W, 3) uint8 RGB photo holding the replacement face.
        replace_lmk5: its (5, 2) landmarks in photo pixels.
        device: where to run.
        template: alignment templates (``"simswap"`` = upstream, see the module docstring).
        downsample: 224 -> 112 resampling before ArcFace.

    Returns:
        float32 (1, 512) tensor on ``device`` with unit L2 norm.
    """
    crop, _ = aligned_crop(replace_img, replace_lmk5, CROP_SIZE, template)
    return identity_latent_from_crop(arcface, crop, device, downsample=downsample)


# --------------------------------------------------------------------------------------
# the swap
# --------------------------------------------------------------------------------------


def _latents_per_face(latents: torch.Tensor | Sequence[torch.Tensor], n: int, device: torch.device) -> list[torch.Tensor]:
    if isinstance(latents, torch.Tensor):
        lat = latents.detach()
        if lat.ndim == 1:
            lat = lat[None]
        if lat.ndim != 2 or lat.shape[1] != 512 or lat.shape[0] not in (1, n):
            raise UsageError(f"latents must be (512,), (1, 512) or ({n}, 512) for {n} face(s), got {tuple(latents.shape)}")
        rows = [lat[0:1]] * n if lat.shape[0] == 1 else [lat[i:i + 1] for i in range(n)]
    else:
        rows = list(latents)
        if len(rows) != n:
            raise UsageError(f"got {len(rows)} latents for {n} face(s)")
        rows = [r.detach().reshape(1, -1) for r in rows]
        for r in rows:
            if r.shape != (1, 512):
                raise UsageError(f"each latent must hold 512 values, got {r.numel()}")
    out = []
    for r in rows:
        r = r.to(device=device, dtype=torch.float32)
        norm = float(r.norm())
        if not np.isfinite(norm) or abs(norm - 1.0) > 1e-3:
            raise UsageError(
                "a SimSwap latent is not L2-normalised",
                hint="make latents with identity_latent(), or F.normalize(latent, dim=1)",
            )
        out.append(r)
    return out


def simswap_faces(
    image: np.ndarray,
    faces_lmk5: Sequence[np.ndarray],
    latents: torch.Tensor | Sequence[torch.Tensor],
    generator: nn.Module,
    device: str | torch.device = "cpu",
    *,
    template: Template = "simswap",
) -> tuple[np.ndarray, list[Box]]:
    """Swap every face of ``image`` to the identity of ``latents`` with the SimSwap 224 generator.

    Args:
        image: (H, W, 3) uint8 RGB photo (not modified).
        faces_lmk5: one (5, 2) landmark array per face, photo ``(x, y)`` pixels.
        latents: L2-normalised identity latent(s): one (1, 512) / (512,) for all faces, an
            (N, 512) tensor or a list of N tensors (one per face).
        generator: SimSwap 224 generator (:func:`imnkit.nets.simswap.simswap_224`) on ``device``,
            ``forward(img (B,3,224,224) [0,1], latent (B,512)) -> (B,3,224,224) [0,1]``; run in
            eval mode (its mode is restored afterwards).
        device: where to run.
        template: alignment templates (``"simswap"`` = upstream).

    Returns:
        ``(mask_image, boxes)``: the Mask photo, (H, W, 3) uint8 RGB, and one box
        ``(y0, x0, y1, x1)`` (exclusive ends) per face holding every pixel that face's paste
        wrote. Outside the union of the boxes ``mask_image`` equals ``image`` bit for bit.

    Convention:
        Each face's affine is :func:`simswap_affine` (photo pixel -> 224 crop pixel); the
        result is pasted back with its exact inverse.
    """
    image = check_rgb(image)
    device = torch.device(device)
    faces = [check_landmarks(p, f"landmarks of face {i}") for i, p in enumerate(faces_lmk5)]
    out = image.copy()
    if not faces:
        return out, []
    lats = _latents_per_face(latents, len(faces), device)
    check_model_device(generator, device, "SimSwap generator")
    mask = simswap_mask(CROP_SIZE)
    # all crops come from the unmodified photo (as upstream), pasted one after another
    jobs = []
    for pts in faces:
        crop, m = aligned_crop(image, pts, CROP_SIZE, template)
        jobs.append((crop, m))
    boxes: list[Box] = []
    with eval_mode(generator):
        for (crop, m), lat in zip(jobs, lats):
            y = generator(_to_tensor(crop, device), lat)
            if y.shape != (1, 3, CROP_SIZE, CROP_SIZE):
                raise UsageError(f"the SimSwap generator returned shape {tuple(y.shape)}, expected (1, 3, 224, 224)")
            boxes.append(paste_crop(out, _to_crop(y), mask, m))
    return out, boxes
