"""The classical enhancement (offline default): a light unsharp mask on luma inside each face box,
faded to nothing at the box edges (see :func:`classical_enhance`). Torch-free."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from imnkit.boxes import Box
from imnkit.errors import UsageError
from imnkit.imageio import BT601_WEIGHTS

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
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"image must be an HxWx3 uint8 RGB array, got {getattr(image, 'shape', type(image).__name__)}")
    image = np.ascontiguousarray(image)
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
