"""Training data: images decoded once into memory, random crops and (protected, Mask) pair sources.

A pair source is any callable ``source(batch, crop, gen) -> (protected, mask)`` returning two
(B, 3, crop, crop) float32 tensors in [0, 1] on the CPU, drawn with the ``torch.Generator`` ``gen`` so
a run is reproducible and resumable. :class:`imnkit.train.swap_pairs.SwapPairs` is one, made by the
real swap stage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from imnkit.errors import InputError
from imnkit.metrics import luma

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class PairSource(Protocol):
    def __call__(self, batch: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...


def find_images(data_dir: str | Path) -> list[Path]:
    """All image files under ``data_dir`` (recursive, sorted for reproducibility)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"training data folder not found: {root}", hint="pass a folder of photos")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(path: Path, max_short_side: int = 512) -> torch.Tensor:
    """Decode to a (3, H, W) uint8 tensor: EXIF-transposed, RGB, shorter side at most ``max_short_side``."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        im = im.convert("RGB")
        short = min(im.size)
        if short > max_short_side:
            scale = max_short_side / short
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            im = im.resize(size, Image.Resampling.LANCZOS)
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        return data.view(im.height, im.width, 3).permute(2, 0, 1).contiguous()


def _decode_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def load_images(data_dir: str | Path, max_short_side: int = 512, min_side: int = 32) -> list[torch.Tensor]:
    """Decode every readable image under ``data_dir`` once (uint8, bounded size); skip unreadable ones."""
    images: list[torch.Tensor] = []
    errors = _decode_errors()
    for path in find_images(data_dir):
        try:
            img = load_image(path, max_short_side)
        except errors as exc:  # a bad file in a big folder should not stop training
            log.warning("skipping unreadable image %s (%s)", path.name, type(exc).__name__)
            continue
        if min(img.shape[-2:]) < min_side:
            log.warning("skipping tiny image %s (%dx%d)", path.name, img.shape[-1], img.shape[-2])
            continue
        images.append(img)
    if not images:
        raise InputError(f"no readable images in {data_dir}", hint="jpg, png or webp files are searched recursively")
    return images


def rand_uniform(gen: torch.Generator, lo: float, hi: float, n: int = 1) -> torch.Tensor:
    """``n`` draws from U[lo, hi) as a float32 CPU tensor, from ``gen`` (so a run stays reproducible)."""
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def rand_index(gen: torch.Generator, n: int) -> int:
    """One integer in [0, n) drawn from ``gen``."""
    return int(torch.randint(n, (1,), generator=gen))


class CropSampler:
    """Random crops with scale jitter, flips and colour jitter from in-memory uint8 images."""

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        scale_range: tuple[float, float] = (1.0, 1.5),
        jitter: float = 0.1,
        gray_prob: float = 0.05,
    ):
        if not images:
            raise ValueError("CropSampler needs at least one image")
        self.images = list(images)
        self.scale_range = scale_range
        self.jitter = jitter
        self.gray_prob = gray_prob

    def crop(self, crop: int, gen: torch.Generator, index: int | None = None) -> torch.Tensor:
        """One (3, crop, crop) float crop in [0, 1]."""
        img = self.images[rand_index(gen, len(self.images)) if index is None else index]
        h, w = img.shape[-2:]
        scale = float(rand_uniform(gen, *self.scale_range))
        size = min(h, w, max(2, round(crop * scale)))  # source window, resized to `crop`
        y = rand_index(gen, h - size + 1)
        x = rand_index(gen, w - size + 1)
        patch = img[:, y : y + size, x : x + size].float().div_(255.0)
        if size != crop:
            patch = F.interpolate(patch[None], size=(crop, crop), mode="bilinear", antialias=size > crop,
                                  align_corners=False)[0]
        if float(torch.rand(1, generator=gen)) < 0.5:
            patch = patch.flip(-1)
        return self._colour(patch, gen).clamp_(0.0, 1.0)

    def _colour(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        j = self.jitter
        if j > 0:
            bright, contrast, sat = (1.0 + rand_uniform(gen, -j, j, 3)).tolist()
            gray = luma(x, channel_axis=0, studio=False)[None]
            x = gray + (x - gray) * sat
            mean = x.mean()
            x = (x - mean) * contrast + mean
            x = x * bright
        if float(torch.rand(1, generator=gen)) < self.gray_prob:
            x = luma(x, channel_axis=0, studio=False)[None].expand(3, -1, -1).clone()
        return x


def ellipse_alpha(size: int, gen: torch.Generator) -> torch.Tensor:
    """A soft elliptical (1, size, size) alpha in [0, 1]: random centre, radii, tilt and feather."""
    cy, cx = (0.5 + rand_uniform(gen, -0.12, 0.12, 2)).tolist()
    ry, rx = rand_uniform(gen, 0.22, 0.42, 2).tolist()
    theta = float(rand_uniform(gen, -0.4, 0.4))
    feather = float(rand_uniform(gen, 0.08, 0.25))  # relative width of the soft edge
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords - cy, coords - cx, indexing="ij")
    cos, sin = math.cos(theta), math.sin(theta)
    u = (xx * cos + yy * sin) / rx
    v = (-xx * sin + yy * cos) / ry
    r = torch.sqrt(u * u + v * v)
    return torch.clamp((1.0 - r) / feather + 0.5, 0.0, 1.0)[None]


def colour_match(src: torch.Tensor, ref: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Match ``src``'s per-channel mean/std to ``ref``'s inside the weighted region (like a swap would)."""
    wsum = weight.sum().clamp_min(1e-6)

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weight).sum(dim=(-2, -1), keepdim=True) / wsum
        var = ((x - mean) ** 2 * weight).sum(dim=(-2, -1), keepdim=True) / wsum
        return mean, var.clamp_min(1e-8).sqrt()

    ms, ss = stats(src)
    mr, sr = stats(ref)
    return ((src - ms) / ss * sr + mr).clamp(0.0, 1.0)


class UnrelatedPairs:
    """Protected and Mask are two independent random crops (the paper's setting)."""

    def __init__(self, sampler: CropSampler):
        self.sampler = sampler

    def __call__(self, batch: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        prot = torch.stack([self.sampler.crop(crop, gen) for _ in range(batch)])
        mask = torch.stack([self.sampler.crop(crop, gen) for _ in range(batch)])
        return prot, mask


class RealisticPairs:
    """Mask = the protected crop with a soft elliptical inner region replaced by another, colour-matched crop.

    This mimics what the swap stage produces (same photo outside the face, new identity inside), which
    NOTES.md measured ~10 dB better than unrelated pairs at equal compute.
    """

    def __init__(self, sampler: CropSampler, unrelated_prob: float = 0.0):
        self.sampler = sampler
        self.unrelated_prob = unrelated_prob

    def make(self, protected: torch.Tensor, donor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        alpha = ellipse_alpha(protected.shape[-1], gen)
        inner = colour_match(donor, protected, alpha)
        return protected * (1 - alpha) + inner * alpha

    def __call__(self, batch: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        prots, masks = [], []
        for _ in range(batch):
            prot = self.sampler.crop(crop, gen)
            donor = self.sampler.crop(crop, gen)
            if float(torch.rand(1, generator=gen)) < self.unrelated_prob:
                mask = donor
            else:
                mask = self.make(prot, donor, gen)
            prots.append(prot)
            masks.append(mask)
        return torch.stack(prots), torch.stack(masks)


PAIR_KINDS = ("realistic", "unrelated")


def make_pair_source(kind: str, images: Sequence[torch.Tensor]) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """Build a built-in pair source by name (``"realistic"`` or ``"unrelated"``)."""
    sampler = CropSampler(images)
    if kind == "realistic":
        return RealisticPairs(sampler)
    if kind == "unrelated":
        return UnrelatedPairs(sampler)
    raise ValueError(f"unknown pair kind {kind!r}; expected one of {PAIR_KINDS}")
