"""enhance stage: restore detail of the swapped faces in the Mask photo.

Contract:
    requires  mask.image          (H, W, 3) uint8
              swap.regions        int64 (N, 4) boxes of the swapped faces
              faces.points5       float32 (N, 5, 2) (for the GPEN backends)
    provides  mask.image          replaced by the enhanced Mask photo (unchanged outside the regions)
              swap.regions        grown to cover every pixel the enhancer changed

Backends:
    classical (offline default): a mild unsharp mask on the luma inside the face boxes with soft
        edges; ``amount = 0`` leaves the image bit-for-bit unchanged.
    none: no change.
    gpen256, gpen512: GPEN-BFR (Hub weights) on each aligned face, pasted back with a soft mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.boxes import union_box
from imnkit.stage import Param, Stage, StageContext, register_stage

_GPEN = {"gpen256": ("gpen.bfr_256", 256), "gpen512": ("gpen.bfr_512", 512)}


@register_stage
class EnhanceStage(Stage):
    name = "enhance"
    summary = "Restore detail of the swapped faces (classical sharpening offline, GPEN-BFR from the Hub)"
    requires = ("mask.image", "swap.regions", "faces.points5")
    provides = ("mask.image", "swap.regions")
    params = (
        Param("backend", str, "classical", "classical, none, gpen256 or gpen512", choices=("classical", "none", "gpen256", "gpen512")),
        Param("amount", float, 0.5, "classical: sharpening strength (0 = unchanged)", min=0.0, max=3.0),
        Param("weights", str, "", "gpen: weights name or local file ('' = gpen.bfr_256 / gpen.bfr_512 by backend)"),
    )

    def weights_for(self, params):
        return ((params["weights"] or _GPEN[params["backend"]][0]),) if params["backend"] in _GPEN else ()

    def uses_torch(self, params, options):
        return params["backend"] in _GPEN

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        backend = params["backend"]
        image = tensor_to_image(bundle.require("mask.image", stage=self.name), "mask.image")
        regions = [list(r) for r in bundle.require("swap.regions", stage=self.name).tolist()]
        if backend == "none" or not regions:
            return
        if backend == "classical":
            from imnkit.face.sharpen import classical_enhance

            out = classical_enhance(image, [tuple(r) for r in regions], amount=params["amount"])
            changed = regions
        else:
            from imnkit.face.enhance import gpen_enhance
            from imnkit.weights import build

            default_name, size = _GPEN[backend]
            name = params["weights"] or default_name
            model = ctx.cached(("model", name, str(ctx.device)), lambda: build(name, ctx.device, like=default_name)[0])
            points = list(np.asarray(bundle.require("faces.points5")))
            out, boxes = gpen_enhance(image, points, model, size, ctx.device)
            changed = [list(b) for b in boxes if b is not None]
            # Keep one box per face, grown to cover what GPEN changed (faces align with swap order).
            regions = [list(union_box([r, c])) for r, c in zip(regions, changed)] + changed[len(regions):]
        bundle.add("mask.image", out)
        bundle.add("swap.regions", np.array(regions, dtype=np.int64).reshape(-1, 4))
