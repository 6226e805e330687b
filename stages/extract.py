"""extract stage: put the Mask off — recover the protected faces from the masked image and the aux.

Contract:
    requires  image.masked       (H, W, 3) uint8, the masked photo as saved
              aux.regions        int64 (R, 4), aux.size int64 (2,), meta aux.* (from embed)
    provides  image.recovered    (H, W, 3) uint8; pixels outside the regions equal image.masked

The aux must belong to this image: the size, the sha256 of the pixels and the weights digest are
checked first. A mismatch is an IntegrityError (exit code 4) unless ``force`` is set, which tries
anyway and records a note saying so.
"""

from __future__ import annotations

from typing import Any

import torch

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.embedding import check_aux_matches, load_network, put_off_regions, read_aux
from imnkit.errors import IntegrityError
from imnkit.stage import Param, Stage, StageContext, register_stage


@register_stage
class ExtractStage(Stage):
    name = "extract"
    summary = "Invertible network in reverse: recover the protected faces from the masked image and its aux"
    requires = ("image.masked", "aux.regions", "aux.size")
    provides = ("image.recovered",)
    params = (
        Param("weights", str, "", "IMN weights; empty = the weights named in the aux"),
        Param("force", bool, False, "try even when the aux does not match the image (the result may be wrong)"),
    )

    def weights_for(self, params):
        return (params["weights"],) if params["weights"] else ()

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        from imnkit.weights import weights_digest

        masked = tensor_to_image(bundle.require("image.masked", stage=self.name), "image.masked")
        info = read_aux(bundle)
        weights = params["weights"] or info.weights
        problems = check_aux_matches(info, masked, weights_digest(weights))
        if problems and not params["force"]:
            raise IntegrityError(
                "the aux does not belong to this masked image: " + "; ".join(problems),
                hint="use the masked PNG exactly as written, with its own aux; --force tries anyway",
            )
        if problems:
            bundle.meta.setdefault("notes", []).append("forced despite: " + "; ".join(problems))
        if masked.shape[:2] != info.size:
            raise IntegrityError("cannot recover: the image size differs from the aux's, even with --force")
        if not info.regions:
            bundle.add("image.recovered", torch.from_numpy(masked.copy()))
            bundle.meta.setdefault("notes", []).append("the aux has no face region: nothing to recover")
            return
        net = load_network(weights, ctx.device, ctx.models)
        bundle.add("image.recovered", torch.from_numpy(put_off_regions(net, masked, info, ctx.device)))
