"""dwt stage: orthonormal Haar DWT (or its inverse) of named images.

Contract (forward, ``inverse = false``), for each key K in ``keys``:
    requires  K          image (H, W, 3) uint8, or a float tensor (B, C, H, W)
    provides  dwt.K      float32 (B, 4C, H/2, W/2), sub-bands LL, HL, LH, HH band-major (imnkit.dwt)
Inverse (``inverse = true``):
    requires  dwt.K      float32 (B, 4C, H, W)
    provides  iwt.K      float32 (B, C, 2H, 2W); for images, values in [0, 1]

Images are read as floats in [0, 1]. Odd sizes: ``odd = "error"`` refuses them; ``odd = "pad"``
repeats the last row/column to make them even and records the size, and the inverse crops back.
Coefficients are computed in float32 (float64 inputs stay float64).
"""

from __future__ import annotations

from typing import Any

from imnkit.bundle import Bundle
from imnkit.errors import UsageError
from imnkit.stage import Param, Stage, StageContext, register_stage


def _keys(params: dict[str, Any]) -> list[str]:
    return [k.strip() for k in params["keys"].split(",") if k.strip()]


@register_stage
class DwtStage(Stage):
    name = "dwt"
    summary = "Haar DWT/IWT of named images: (B,C,H,W) -> (B,4C,H/2,W/2), exact inverse"
    params = (
        Param("keys", str, "image.protected", "comma-separated keys to transform"),
        Param("inverse", bool, False, "run the inverse transform on dwt.<key> and write iwt.<key>"),
        Param("odd", str, "error", "odd height/width: error, or pad (replicate the edge, cropped on inverse)",
              choices=("error", "pad")),
    )

    def requires_for(self, params):
        return tuple(("dwt." + k) if params["inverse"] else k for k in _keys(params))

    def provides_for(self, params):
        return tuple(("iwt." + k) if params["inverse"] else ("dwt." + k) for k in _keys(params))

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        import torch
        import torch.nn.functional as F

        from imnkit.dwt import haar_dwt, haar_iwt
        from imnkit.imageconv import to_float

        for key in _keys(params):
            if params["inverse"]:
                coeffs = torch.as_tensor(bundle.require("dwt." + key, stage=self.name)).to(ctx.device)
                if not coeffs.is_floating_point() or coeffs.dim() != 4:
                    raise UsageError(f"dwt: 'dwt.{key}' must be a float (B, 4C, H, W) tensor, got {tuple(coeffs.shape)}")
                out = haar_iwt(coeffs)
                size = bundle.meta.get(f"dwt.{key}.size")
                if size:
                    out = out[..., : size[0], : size[1]]
                bundle.add("iwt." + key, out)
                continue
            x = torch.as_tensor(bundle.require(key, stage=self.name))
            if x.dtype == torch.uint8 and x.dim() == 3:
                x = to_float(x)
            elif not x.is_floating_point() or x.dim() != 4:
                raise UsageError(f"dwt: '{key}' must be an image or a float (B, C, H, W) tensor, got {tuple(x.shape)} {x.dtype}")
            x = x.to(ctx.device)
            if x.dtype not in (torch.float32, torch.float64):
                x = x.float()
            h, w = x.shape[-2:]
            if h % 2 or w % 2:
                if params["odd"] == "error":
                    raise UsageError(f"dwt: '{key}' is {w}x{h}; the Haar DWT needs even sides",
                                     hint="set odd=pad to replicate the last row/column")
                x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
                bundle.meta[f"dwt.{key}.size"] = [h, w]
            bundle.add("dwt." + key, haar_dwt(x))
