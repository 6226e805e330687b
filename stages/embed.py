"""embed stage: put the Mask on — hide the protected face regions inside the Mask photo.

Contract:
    requires  image.protected    (H, W, 3) uint8, the original photo
              mask.image         (H, W, 3) uint8, the Mask photo (same size)
    optional  swap.regions       int64 (N, 4) boxes y0, x0, y1, x1 (exclusive) of the changed pixels;
                                 without it the whole image is one region
              dwt.image.protected, dwt.mask.image
                                 Haar coefficients of the whole images (the dwt stage); used, sliced
                                 at each region, instead of transforming the crops again
    provides  image.masked       (H, W, 3) uint8: exactly the pixels that will be saved
              aux.regions        int64 (R, 4) the (merged, even-sided) regions that were hidden
              aux.size           int64 (2,) image height, width
              meta aux.*         format, weights name and sha256, seed, sha256 of the masked pixels
              embed.region       int64 (4,) the bounding box of all regions (for the metrics stage)
"""

from __future__ import annotations

from typing import Any

import torch

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.embedding import DEFAULT_WEIGHTS, even_box, load_network, merge_boxes, put_on_regions
from imnkit.stage import Param, Stage, StageContext, register_stage


@register_stage
class EmbedStage(Stage):
    name = "embed"
    summary = "Invertible network: hide the protected face regions inside the Mask photo; writes the masked image and the aux"
    requires = ("image.protected", "mask.image")
    optional = ("swap.regions", "dwt.image.protected", "dwt.mask.image")
    provides = ("image.masked", "aux.regions", "aux.size", "embed.region")
    params = (
        Param("weights", str, DEFAULT_WEIGHTS, "IMN weights: a registry name or a path to a .safetensors file"),
        Param("seed", int, 0, "seed of the auxiliary noise n (stored in the aux)", min=0),
        Param("margin", int, 8, "pixels added around each changed region before hiding", min=0, max=256),
        Param("refine", int, 0, "optimisation steps on the masked pixels against what extraction will "
              "compute (lower recovery + masked error, best point kept; each step costs ~3 network passes: "
              "for a GPU or for archiving; gains depend on the weights, see README)", min=0, max=1000),
    )

    def weights_for(self, params):
        return (params["weights"],)

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        from imnkit.weights import weights_digest

        protected = tensor_to_image(bundle.require("image.protected", stage=self.name), "image.protected")
        mask = tensor_to_image(bundle.require("mask.image", stage=self.name), "mask.image")
        h, w = protected.shape[:2]
        if "swap.regions" in bundle.tensors:
            raw = [tuple(int(v) for v in row) for row in bundle.tensors["swap.regions"].reshape(-1, 4).tolist()]
        else:
            raw = [(0, 0, h, w)]
        boxes = merge_boxes([even_box(b, h, w, params["margin"]) for b in raw])
        net = load_network(params["weights"], ctx.device, ctx.models)
        coeffs = None
        if "dwt.image.protected" in bundle.tensors and "dwt.mask.image" in bundle.tensors:
            coeffs = (bundle.tensors["dwt.image.protected"], bundle.tensors["dwt.mask.image"])
        result = put_on_regions(net, protected, mask, boxes, seed=params["seed"], weights=params["weights"],
                                weights_digest=weights_digest(params["weights"]), device=ctx.device, coeffs=coeffs,
                                refine=params["refine"])
        bundle.add("image.masked", torch.from_numpy(result.masked))
        for key, value in result.aux.tensors.items():
            bundle.add(key, value)
        bundle.meta.update(result.aux.meta)
        if boxes:
            union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
        else:
            union = (0, 0, 0, 0)
            bundle.meta.setdefault("notes", []).append("no face region: the photo passed through unchanged")
        bundle.add("embed.region", torch.tensor(union, dtype=torch.int64))
