"""Measure IMN weights the way users meet them: realistic pairs from face regions, 8-bit PNG round trip.

Pairs: for each photo with a face (dlib's HOG detector, largest face), a square box of 1.8x the face
size, resized so its side lies in [256, 512] (even). The Mask is that box with a fixed elliptical inner
region replaced by the next photo's face box, colour-matched and feathered (``RealisticPairs.make``),
standing in for the swap stage. Metrics (all from 8-bit values): Y-PSNR (BT.601 luma), RGB-PSNR and
SSIM (:func:`imnkit.metrics.ssim`, the convention of ``imnkit metrics``) of recovered vs protected and
of masked vs Mask.
"""

from __future__ import annotations

import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imnkit.imageconv import to_float, to_uint8
from imnkit.imageio import atomic_output
from imnkit import metrics
from imnkit.nets.imn import InvertibleMaskNet, put_off, put_on
from imnkit.train.checkpoint import load_weights
from imnkit.train.data import colour_match, find_images, load_image
from imnkit.train.losses import rgb_psnr, to_8bit, y_psnr

log = logging.getLogger(__name__)


def _face_box(img: torch.Tensor) -> tuple[int, int, int] | None:
    """(top, left, side) of a square around the largest face, or None."""
    import dlib
    import numpy as np

    h, w = img.shape[-2:]
    scale = min(1.0, 800.0 / max(h, w))
    small = img
    if scale < 1.0:
        small = F.interpolate(img[None].float(), scale_factor=scale, mode="area")[0].round().byte()
    arr = np.ascontiguousarray(small.permute(1, 2, 0).numpy())
    dets = dlib.get_frontal_face_detector()(arr, 1)
    if not dets:
        return None
    d = max(dets, key=lambda r: r.width() * r.height())
    cx, cy = (d.left() + d.right()) / 2 / scale, (d.top() + d.bottom()) / 2 / scale
    side = int(min(h, w, 1.8 * max(d.width(), d.height()) / scale)) // 2 * 2
    top = int(min(max(cy - side / 2, 0), h - side))
    left = int(min(max(cx - side / 2, 0), w - side))
    return top, left, side


def _fixed_ellipse(size: int) -> torch.Tensor:
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    yy, xx = torch.meshgrid(coords + 0.03, coords, indexing="ij")
    r = torch.sqrt((xx / 0.30) ** 2 + (yy / 0.38) ** 2)
    return torch.clamp((1.0 - r) / 0.15 + 0.5, 0.0, 1.0)[None]


def build_eval_pairs(
    faces_dir: str | Path, limit: int = 20, cache: str | Path | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(protected, mask) pairs, each (1, 3, S, S) float in [0, 1] with S in [256, 512]; cached if asked."""
    from safetensors.torch import load_file, save_file

    if cache is not None and Path(cache).exists():
        t = load_file(str(cache))
        n = len([k for k in t if k.startswith("prot.")])
        return [(t[f"prot.{i}"], t[f"mask.{i}"]) for i in range(n)]
    crops: list[torch.Tensor] = []
    for path in find_images(faces_dir):
        if path.name.startswith("noface"):
            continue
        img = load_image(path, max_short_side=4096)
        box = _face_box(img)
        if box is None or box[2] < 96:
            continue
        top, left, side = box
        crop = img[:, top : top + side, left : left + side].float()[None] / 255.0
        target = min(512, max(256, side)) // 2 * 2
        if target != side:
            crop = F.interpolate(crop, size=(target, target), mode="bicubic", antialias=True,
                                 align_corners=False).clamp(0, 1)
        crops.append(to_8bit(crop))
        if len(crops) >= limit:
            break
    pairs = []
    for i, prot in enumerate(crops):
        donor = crops[(i + 1) % len(crops)]
        s = prot.shape[-1]
        donor = F.interpolate(donor, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        alpha = _fixed_ellipse(s)
        inner = colour_match(donor[0], prot[0], alpha)
        mask = to_8bit((prot[0] * (1 - alpha) + inner * alpha)[None])
        pairs.append((prot, mask))
    if cache is not None:
        tensors = {}
        for i, (p, m) in enumerate(pairs):
            tensors[f"prot.{i}"], tensors[f"mask.{i}"] = p.contiguous(), m.contiguous()
        with atomic_output(cache, overwrite=True) as tmp:
            save_file(tensors, str(tmp))
    return pairs


def png_round_trip(x: torch.Tensor) -> torch.Tensor:
    """Encode (1, 3, H, W) in [0, 1] as an 8-bit PNG in memory and decode it again."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(x).numpy()).save(buf, format="PNG")
    buf.seek(0)
    with Image.open(buf) as im:
        return to_float(np.asarray(im.convert("RGB")))


def ssim_8bit(a: torch.Tensor, b: torch.Tensor) -> float:
    """:func:`imnkit.metrics.ssim` (Gaussian 11/1.5 window, as ``imnkit metrics``) of two (1, 3, H, W)
    images in [0, 1], rounded to 8 bits first."""
    return metrics.ssim(to_uint8(a).numpy(), to_uint8(b).numpy())


@torch.no_grad()
def evaluate_net(net: InvertibleMaskNet, pairs: list[tuple[torch.Tensor, torch.Tensor]], seed: int = 1234,
                 ssim: bool = True) -> dict[str, Any]:
    """Mean (and worst) metrics over the pairs; recovery runs from the decoded 8-bit PNG."""
    net = net.eval()
    rows = []
    t0 = time.perf_counter()
    for prot, mask in pairs:
        masked = png_round_trip(put_on(net, prot, mask))
        rec = put_off(net, masked, seed)
        row = {
            "rec_y": y_psnr(rec, prot), "rec_rgb": rgb_psnr(rec, prot),
            "masked_y": y_psnr(masked, mask), "masked_rgb": rgb_psnr(masked, mask),
        }
        if ssim:
            row["rec_ssim"] = ssim_8bit(rec, prot)
            row["masked_ssim"] = ssim_8bit(masked, mask)
        rows.append(row)
    out: dict[str, Any] = {"n": len(rows), "seconds": round(time.perf_counter() - t0, 1)}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        finite = [v for v in vals if math.isfinite(v)]
        # A perfect pair has infinite PSNR: average the finite ones, or report inf if none is finite.
        out[k] = round(sum(finite) / len(finite), 4 if "ssim" in k else 2) if finite else float("inf")
        out[k + "_min"] = round(min(vals), 4 if "ssim" in k else 2)
    return out


def evaluate_weights(path: str | Path, pairs: list[tuple[torch.Tensor, torch.Tensor]], seed: int = 1234) -> dict[str, Any]:
    """Load a weights file or training checkpoint and :func:`evaluate_net` it."""
    import json

    from imnkit.train.checkpoint import read_metadata

    net = load_weights(path)
    res = evaluate_net(net, pairs, seed)
    meta = read_metadata(path)
    if "imnkit.train_state" in meta:
        st = json.loads(meta["imnkit.train_state"])
        res["step"] = st["step"]
        res["train_minutes"] = round(st["elapsed"] / 60, 1)
    return res
