"""Image quality metrics on the 0–255 scale: PSNR (RGB and Y), SSIM, RMSE and MAE.

Conventions (the same as scikit-image, which the tests use as the reference):

- PSNR: ``10·log10(255² / MSE)`` over all pixels and channels, float64. Identical images give ``inf``.
- PSNR-Y: on the BT.601 luma of the paper's reference code,
  ``Y = 16 + (65.481·R + 128.553·G + 24.966·B) / 255`` for R, G, B in 0–255; not rounded.
- SSIM: Wang et al. with a Gaussian window of 11 taps, σ = 1.5, K1 = 0.01, K2 = 0.03, population
  covariances, data range 255; computed per RGB channel over the pixels whose whole window lies inside
  the image, then averaged (``skimage.metrics.structural_similarity(..., channel_axis=2,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``).
- RMSE and MAE: over all pixels and channels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UsageError
from .imageio import BT601_WEIGHTS  # BT.601 luma weights of R, G and B: Y' = 0.299 R + 0.587 G + 0.114 B

#: The same weights scaled to the 8-bit studio swing (219 / 255), as MATLAB's ``rgb2ycbcr`` and the
#: paper's reference code: Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1].
BT601_STUDIO_WEIGHTS = (65.481, 128.553, 24.966)


@dataclass(frozen=True)
class ImageMetrics:
    psnr_rgb: float
    psnr_y: float
    ssim: float
    rmse: float
    mae: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _as_float(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise UsageError(
            f"the images differ in size: {_fmt_shape(a.shape)} vs {_fmt_shape(b.shape)}",
            hint="compare images of the same size, or pick a --region",
        )


def _fmt_shape(shape: tuple) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else str(shape)


def psnr_from_mse(mse: float, data_range: float = 255.0) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all channels on the 0–255 scale."""
    check_same_shape(a, b)
    return psnr_from_mse(float(np.mean((_as_float(a) - _as_float(b)) ** 2)))


def luma(rgb: np.ndarray | torch.Tensor, *, channel_axis: int = -1, peak: float = 255.0,
         studio: bool = True) -> np.ndarray | torch.Tensor:
    """BT.601 luma of RGB values, from a numpy array or a torch tensor.

    Args:
        rgb: a numpy array (computed in float64) or a torch tensor (computed in its own dtype) with
            R, G, B along ``channel_axis``, on the 0–``peak`` scale.
        channel_axis: the axis holding R, G, B: -1 for (H, W, 3) arrays, 1 for (B, 3, H, W) tensors.
        peak: the value of full white in ``rgb``: 255 for 8-bit values, 1 for floats in [0, 1].
        studio: True: Y on the 8-bit studio scale 16–235 whatever ``peak`` is,
            ``16 + (65.481 R + 128.553 G + 24.966 B) / peak`` (:data:`BT601_STUDIO_WEIGHTS`; the PSNR-Y
            convention). False: ``0.299 R + 0.587 G + 0.114 B`` on the scale of ``rgb``
            (:data:`BT601_WEIGHTS`; a grey level).

    Returns:
        The luma, shaped like ``rgb`` without the channel axis.

    Example:
        >>> round(float(luma(np.array([255, 255, 255]))), 6)
        235.0
        >>> luma(torch.ones(1, 3, 2, 2), channel_axis=1, peak=1.0, studio=False).shape
        torch.Size([1, 2, 2])
    """
    x = rgb if isinstance(rgb, torch.Tensor) else _as_float(rgb)
    if x.ndim == 0 or x.shape[channel_axis] != 3:
        raise ValueError(f"luma needs 3 channels on axis {channel_axis}, got shape {tuple(x.shape)}")
    r, g, b = x.unbind(channel_axis) if isinstance(x, torch.Tensor) else np.moveaxis(x, channel_axis, 0)
    if not studio:
        w = BT601_WEIGHTS
        return w[0] * r + w[1] * g + w[2] * b
    w = tuple(c / peak for c in BT601_STUDIO_WEIGHTS)
    return 16.0 + w[0] * r + w[1] * g + w[2] * b


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of the BT.601 luma (data range 255, as the reference hiding code)."""
    check_same_shape(a, b)
    return psnr_from_mse(float(np.mean((luma(a) - luma(b)) ** 2)))


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    check_same_shape(a, b)
    return float(np.sqrt(np.mean((_as_float(a) - _as_float(b)) ** 2)))


def mae(a: np.ndarray, b: np.ndarray) -> float:
    check_same_shape(a, b)
    return float(np.mean(np.abs(_as_float(a) - _as_float(b))))


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    r = (size - 1) / 2.0
    x = torch.arange(size, dtype=torch.float64) - r
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(a: np.ndarray, b: np.ndarray, *, win: int = 11, sigma: float = 1.5, data_range: float = 255.0) -> float:
    """Mean SSIM of two (H, W) or (H, W, C) images (see the module docstring for the convention)."""
    check_same_shape(a, b)
    x = torch.from_numpy(_as_float(a))
    y = torch.from_numpy(_as_float(b))
    if x.dim() == 2:
        x, y = x[..., None], y[..., None]
    h, w = x.shape[:2]
    if h < win or w < win:
        raise UsageError(f"SSIM needs images of at least {win}x{win} pixels, got {w}x{h}")
    # (C, 1, H, W): each channel filtered on its own.
    x = x.permute(2, 0, 1).unsqueeze(1)
    y = y.permute(2, 0, 1).unsqueeze(1)
    taps = _gaussian_taps(win, sigma)

    def blur(t: torch.Tensor) -> torch.Tensor:  # 'valid' separable filtering: only full windows
        t = F.conv2d(t, taps.view(1, 1, win, 1))
        return F.conv2d(t, taps.view(1, 1, 1, win))

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean(dim=(1, 2, 3)).mean())


def parse_region(text: str) -> tuple[int, int, int, int]:
    """'y0,x0,y1,x1' -> a box with exclusive ends."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise UsageError(f"--region must be four integers y0,x0,y1,x1, got '{text}'")
    y0, x0, y1, x1 = parts
    if y0 < 0 or x0 < 0 or y1 <= y0 or x1 <= x0:
        raise UsageError(f"--region {text} is empty or negative (need 0 <= y0 < y1 and 0 <= x0 < x1)")
    return parts  # type: ignore[return-value]


def crop(image: np.ndarray, region: tuple[int, int, int, int] | None) -> np.ndarray:
    if region is None:
        return image
    y0, x0, y1, x1 = region
    h, w = image.shape[:2]
    if y1 > h or x1 > w:
        raise UsageError(f"region {y0},{x0},{y1},{x1} lies outside the {w}x{h} image")
    return image[y0:y1, x0:x1]


def compare(a: np.ndarray, b: np.ndarray, region: tuple[int, int, int, int] | None = None) -> ImageMetrics:
    """All metrics of two (H, W, 3) images on the 0–255 scale, optionally over a region."""
    check_same_shape(a, b)
    a, b = crop(a, region), crop(b, region)
    return ImageMetrics(psnr_rgb=psnr(a, b), psnr_y=psnr_y(a, b), ssim=ssim(a, b), rmse=rmse(a, b), mae=mae(a, b))


def json_safe(value: float) -> float | str:
    """JSON has no infinity: identical images report PSNR as the string "inf"."""
    return "inf" if isinstance(value, float) and math.isinf(value) else value
