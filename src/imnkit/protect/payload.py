"""Compress face regions into a byte budget: lossless when it fits, else AVIF at the best quality that fits.

Codecs (all built into Pillow):

- ``webp-lossless``: exact RGB (sides up to 16383 px), typically 4-9 bits per pixel on faces;
- ``png``: exact RGB for regions too large for WebP;
- ``avif``: AV1 still image, 4:4:4, quality 1-99; on face regions q95 took ~2.7-3.6 bits per pixel
  for ~50 dB Y-PSNR (see docs/security.md for the measured curve).

AVIF encoding is deterministic, so the same region, budget and quality give the same bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

from ..errors import IntegrityError, UsageError

CODECS = ("webp-lossless", "png", "avif")
_WEBP_MAX_SIDE = 16383
_AVIF_SPEED = 9  # measured: as fast as 10 here and ~4 % smaller; 8 and below cost 3-8x the time
_MIN_QUALITY = 1
_LARGE_REGION = 250_000  # pixels: above this an encode costs ~0.1 s or more on 2 cores
_FIRST_QUALITY = 97
_TYPICAL_SLOPE = 0.05  # d log(size) / d quality near q90-97 on face regions (measured 0.042-0.074)


@dataclass(frozen=True)
class Coded:
    codec: str
    quality: int  # 100 for the lossless codecs
    data: bytes

    def describe(self, pixels: int) -> dict:
        return {"codec": self.codec, "quality": self.quality, "bytes": len(self.data),
                "bpp": round(8 * len(self.data) / max(pixels, 1), 3)}


def encode(region: np.ndarray, codec: str, quality: int = 100) -> Coded:
    """Encode an (H, W, 3) uint8 region with ``codec``."""
    image = Image.fromarray(np.ascontiguousarray(region, dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    if codec == "webp-lossless":
        if max(region.shape[:2]) > _WEBP_MAX_SIDE:
            return encode(region, "png")
        image.save(buf, "WEBP", lossless=True, exact=True, quality=50, method=0)
        quality = 100
    elif codec == "png":
        image.save(buf, "PNG", compress_level=6)
        quality = 100
    elif codec == "avif":
        _require_avif()
        image.save(buf, "AVIF", quality=int(quality), subsampling="4:4:4", speed=_AVIF_SPEED)
    else:
        raise UsageError(f"unknown codec '{codec}' (known: {', '.join(CODECS)})")
    return Coded(codec, int(quality), buf.getvalue())


def decode(data: bytes, codec: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode authenticated payload bytes back to an (H, W, 3) uint8 region of ``shape``."""
    if codec not in CODECS:
        raise IntegrityError(f"the aux names an unknown codec '{codec[:20]}'")
    with Image.open(io.BytesIO(data)) as image:
        region = np.array(image.convert("RGB"))
    if region.shape[:2] != tuple(shape):
        raise IntegrityError("a hidden region decoded to the wrong size")
    return region


def fit(region: np.ndarray, budget: int, *, max_quality: int = 99, try_lossless: bool = True) -> Coded:
    """The best encoding of ``region`` in at most ``budget`` bytes.

    Lossless first when the budget could hold it (> 4 bits per pixel), else the highest AVIF
    quality <= ``max_quality`` that fits, found in a few encodes: AVIF's size grows about
    exponentially with quality, so each guess interpolates log(size) between the nearest
    qualities tried. Raises UsageError when even the lowest quality does not fit.
    """
    pixels = region.shape[0] * region.shape[1]
    if try_lossless and 8 * budget > 4 * pixels:
        coded = encode(region, "webp-lossless")
        if len(coded.data) <= budget:
            return coded
    tried: dict[int, int] = {}
    best: Coded | None = None
    # Face regions at the budgets the sealed method gives (~2.6-3 bits per pixel) land at q96-98:
    # starting at 97 usually settles it in one encode (0.1-0.2 s for a 1024^2 portrait's region).
    quality = min(max_quality, _FIRST_QUALITY)
    for _ in range(6):
        coded = encode(region, "avif", quality)
        tried[quality] = len(coded.data)
        if len(coded.data) <= budget and (best is None or quality > best.quality):
            best = coded
        quality = _next_quality(tried, budget, max_quality, best.quality if best else _MIN_QUALITY - 1,
                                large=pixels > _LARGE_REGION)
        if quality is None:
            break
    if best is None:
        raise UsageError("the face regions do not fit in the carrier even at the lowest quality",
                         hint="lower embed.masked_psnr, or use embed.method=detached")
    return best


def _next_quality(tried: dict[int, int], budget: int, max_quality: int, best_fit: int, large: bool) -> int | None:
    """The next quality to try, or None when the best fitting one is known.

    log(size) is about linear in quality: the guess extrapolates from the tried quality whose size
    is nearest the budget, with the slope between the two nearest (or a typical one).
    """
    over = [q for q, n in tried.items() if n > budget]
    ceiling = min(over) - 1 if over else max_quality
    # Within a step or two of the ceiling another encode (0.1-0.2 s on 2 cores) buys ~0.1 dB: stop.
    if best_fit >= ceiling - (2 if large else 1):
        return None
    nearest = sorted(tried.items(), key=lambda item: abs(math.log(item[1] / budget)))
    q_ref, n_ref = nearest[0]
    slope = _TYPICAL_SLOPE
    if len(nearest) > 1 and nearest[1][0] != q_ref:
        q2, n2 = nearest[1]
        measured = (math.log(n2) - math.log(n_ref)) / (q2 - q_ref)
        slope = measured if measured > 0.01 else slope
    guess = q_ref + math.floor(math.log(budget / n_ref) / slope)
    guess = max(best_fit + 1, _MIN_QUALITY, min(ceiling, guess))
    if guess in tried:  # the estimate points at a quality already tried: step past it
        guess = guess + 1 if tried[guess] <= budget else guess - 1
    return guess if best_fit < guess <= ceiling and guess not in tried else None


def _require_avif() -> None:
    if not features.check("avif"):
        raise UsageError("this Pillow has no AVIF codec", hint="pip install 'pillow>=11.3' (its wheels include AVIF)")


def pack_atlas(regions: list[np.ndarray], fill: int = 128) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All regions in one image (shelf packing, tallest first), so one codec header serves them all
    and one quality setting spreads the budget evenly; the gaps are flat ``fill`` (nearly free).

    Returns the atlas and each region's top-left corner (y, x) in it.
    """
    if not regions:
        return np.full((1, 1, 3), fill, np.uint8), []
    widest = max(r.shape[1] for r in regions)
    width = max(widest, int(math.sqrt(sum(r.shape[0] * r.shape[1] for r in regions)) * 1.2))
    places: list[tuple[int, int]] = [(0, 0)] * len(regions)
    y = x = shelf = 0
    for i in sorted(range(len(regions)), key=lambda i: -regions[i].shape[0]):
        h, w = regions[i].shape[:2]
        if x + w > width:
            y, x, shelf = y + shelf, 0, 0
        places[i] = (y, x)
        x, shelf = x + w, max(shelf, h)
    atlas = np.full((y + shelf, width, 3), fill, np.uint8)
    for (py, px), region in zip(places, regions):
        atlas[py : py + region.shape[0], px : px + region.shape[1]] = region
    return atlas, places


def unpack_atlas(atlas: np.ndarray, places, shapes) -> list[np.ndarray]:
    """The regions of ``shapes`` back out of an atlas (IntegrityError if one does not fit)."""
    out = []
    for (y, x), (h, w) in zip(places, shapes):
        if y < 0 or x < 0 or y + h > atlas.shape[0] or x + w > atlas.shape[1]:
            raise IntegrityError("a hidden region lies outside the payload image")
        out.append(atlas[y : y + h, x : x + w])
    return out
