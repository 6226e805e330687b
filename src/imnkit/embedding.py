"""Put the Mask on and off: the invertible network applied to face regions, plus the aux file.

Only the face regions differ between the protected photo and the Mask photo, so only they are run
through the network: each region box (even sides, so the Haar DWT applies) of the Mask photo is
replaced by the network's masked output, rounded to the 8 bits that will be saved. Outside the boxes
the masked image *is* the Mask image, and the recovered image *is* the masked image (= the protected
photo there, because the Mask photo equals it outside the faces), bit for bit.

The aux holds only what extraction needs: format version, weights name and digest, region boxes,
image size, the seed that draws the auxiliary noise n, and the sha256 of the masked pixels. It never
holds protected pixels or the lost information m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .bundle import Bundle
from .errors import IntegrityError, UsageError, WeightsError
from .imageconv import to_float, to_uint8
from .imageio import pixels_digest

AUX_FORMAT = 1


def build_imn(meta: dict[str, str]):
    """Weights factory: an InvertibleMaskNet shaped by the config stored in the file's metadata."""
    from .nets.imn import ImnConfig, InvertibleMaskNet

    if "imnkit.config" not in meta:
        raise WeightsError("these weights carry no imnkit.config metadata: not an imnkit IMN file")
    return InvertibleMaskNet(ImnConfig.from_json(meta["imnkit.config"]))


build_imn.takes_metadata = True  # type: ignore[attr-defined]


def load_network(weights: str, device: torch.device, cache: dict | None = None):
    """The IMN for ``weights`` (registry name or path to a .safetensors file) on ``device``, cached per process."""
    from .weights import build

    key = ("imn", weights, str(device))
    if cache is not None and key in cache:
        return cache[key]
    net, _ = build(weights, device)
    # channels_last (NHWC) convolutions are ~1.6x faster on the CPU here (730x740 region: 2.9 s -> 1.7 s);
    # still float32, so put on / put off stay exact inverses up to float rounding.
    net = net.to(memory_format=torch.channels_last)
    if cache is not None:
        cache[key] = net
    return net


def region_seed(seed: int, index: int) -> int:
    """The noise seed of region ``index``: distinct per region, reproducible from the aux seed."""
    return (seed * 1_000_003 + index) & 0x7FFF_FFFF_FFFF_FFFF


def _crop_float(image: np.ndarray, box, device) -> torch.Tensor:
    y0, x0, y1, x1 = box
    # channels_last: the layout the network's convolutions run fastest in
    return to_float(image[y0:y1, x0:x1], device).contiguous(memory_format=torch.channels_last)


def _put_on_wavelet(net, coeff_protected: torch.Tensor, coeff_mask: torch.Tensor) -> torch.Tensor:
    """put_on from Haar coefficients (the dwt stage's output): couplings then IWT, in float32."""
    from .dwt import haar_iwt

    s = coeff_protected - coeff_mask if net.config.hide == "difference" else coeff_protected
    c = coeff_mask
    with torch.autocast(device_type=c.device.type, enabled=False):
        for block in net.blocks:
            c, s = block(c, s)
    return haar_iwt(c)


@dataclass
class EmbedResult:
    masked: np.ndarray  # (H, W, 3) uint8: exactly what will be saved
    regions: list[tuple[int, int, int, int]]
    aux: Bundle


def put_on_regions(net, protected: np.ndarray, mask: np.ndarray, boxes: list, *, seed: int,
                   weights: str, weights_digest: str | None, device: torch.device,
                   coeffs: tuple[torch.Tensor, torch.Tensor] | None = None, refine: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> EmbedResult:
    """Hide each region of ``protected`` in the same region of ``mask``; returns masked + aux.

    ``coeffs``: optional Haar coefficients (B, 12, H/2, W/2) of the whole protected and Mask images;
    a box with even corners maps to the coefficient box ``[y0/2:y1/2, x0/2:x1/2]``, which is exactly
    the DWT of the crop (the Haar transform works on disjoint 2x2 blocks).
    ``refine``: steps of :func:`imnkit.nets.imn.refine_masked` per region (0: the network's output as is).
    ``progress(done, total)``: called after each refine step, counted over all regions.
    """
    from .nets.imn import put_on, refine_masked

    if protected.shape != mask.shape:
        raise UsageError(f"the protected and Mask images differ in size: {protected.shape[:2]} vs {mask.shape[:2]}")
    masked = mask.copy()
    for index, box in enumerate(boxes):
        y0, x0, y1, x1 = box
        crops = None
        if coeffs is None or refine > 0:
            crops = _crop_float(protected, box, device), _crop_float(mask, box, device)
        if coeffs is not None:
            cp, cm = (c[..., y0 // 2 : y1 // 2, x0 // 2 : x1 // 2].to(device).float().contiguous(memory_format=torch.channels_last)
                      for c in coeffs)
            out = _put_on_wavelet(net, cp, cm)
        else:
            out = put_on(net, *crops)
        if refine > 0:  # the seed extraction will use for this region (see put_off_regions)
            on_step = None if progress is None else (lambda k, i=index: progress(i * refine + k, refine * len(boxes)))
            out = refine_masked(net, *crops, out, region_seed(seed, index), refine, on_step=on_step)
        masked[y0:y1, x0:x1] = to_uint8(out).numpy()
    aux = make_aux(masked, boxes, seed=seed, weights=weights, weights_digest=weights_digest, hide=net.config.hide)
    return EmbedResult(masked=masked, regions=list(boxes), aux=aux)


def make_aux(masked: np.ndarray, boxes: list, *, seed: int, weights: str, weights_digest: str | None, hide: str) -> Bundle:
    h, w = masked.shape[:2]
    regions = torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)
    return Bundle(
        tensors={"aux.regions": regions, "aux.size": torch.tensor([h, w], dtype=torch.int64)},
        meta={
            "aux.format": AUX_FORMAT,
            "aux.weights": weights,
            "aux.weights_sha256": weights_digest,
            "aux.seed": int(seed),
            "aux.masked_sha256": pixels_digest(masked),
            "aux.hide": hide,
        },
    )


@dataclass
class AuxInfo:
    regions: list[tuple[int, int, int, int]]
    size: tuple[int, int]
    seed: int
    weights: str
    weights_sha256: str | None
    masked_sha256: str


def read_aux(aux: Bundle) -> AuxInfo:
    """Check the aux bundle's contents and return them (BundleError/IntegrityError when broken)."""
    from .errors import BundleError

    where = aux.source or "the aux"
    fmt = aux.meta.get("aux.format")
    if fmt is None:
        raise BundleError(f"{where}: not an imnkit aux file (no aux.format)", hint="pass the *.aux.safetensors written with the masked image")
    if int(fmt) > AUX_FORMAT:
        raise BundleError(f"{where}: aux format {fmt} is newer than this imnkit reads ({AUX_FORMAT})", hint="upgrade imnkit")
    try:
        regions = [tuple(int(v) for v in row) for row in aux.require("aux.regions").reshape(-1, 4).tolist()]
        h, w = (int(v) for v in aux.require("aux.size").tolist())
        return AuxInfo(regions=regions, size=(h, w), seed=int(aux.meta["aux.seed"]), weights=str(aux.meta["aux.weights"]),
                       weights_sha256=aux.meta.get("aux.weights_sha256"), masked_sha256=str(aux.meta["aux.masked_sha256"]))
    except (KeyError, ValueError, TypeError):
        raise BundleError(f"{where}: the aux file is incomplete or corrupt") from None


def check_aux_matches(info: AuxInfo, masked: np.ndarray, weights_digest: str | None) -> list[str]:
    """Problems that make recovery unreliable: other photo, resized or re-encoded file, other weights."""
    problems = []
    h, w = masked.shape[:2]
    if (h, w) != info.size:
        problems.append(f"the image is {w}x{h} but the aux was made for {info.size[1]}x{info.size[0]} "
                        "(resized, or another photo)")
    elif pixels_digest(masked) != info.masked_sha256:
        problems.append("the pixels differ from the masked image this aux was made for "
                        "(another photo, or an edited or re-encoded copy such as a JPEG)")
    if info.weights_sha256 and weights_digest and info.weights_sha256 != weights_digest:
        problems.append(f"the aux was made with other weights than '{info.weights}' here "
                        f"(sha256 {info.weights_sha256[:12]}… vs {weights_digest[:12]}…)")
    return problems


def put_off_regions(net, masked: np.ndarray, info: AuxInfo, device: torch.device) -> np.ndarray:
    """Recover every region; pixels outside the regions are returned unchanged."""
    from .nets.imn import put_off

    recovered = masked.copy()
    h, w = masked.shape[:2]
    for index, box in enumerate(info.regions):
        y0, x0, y1, x1 = box
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w) or (y1 - y0) % 2 or (x1 - x0) % 2:
            raise IntegrityError(f"aux region {box} does not fit the {w}x{h} image")
        out = put_off(net, _crop_float(masked, box, device), region_seed(info.seed, index))
        recovered[y0:y1, x0:x1] = to_uint8(out).numpy()
    return recovered
