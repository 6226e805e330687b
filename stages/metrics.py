"""metrics stage: PSNR (RGB, Y), SSIM, RMSE, MAE between two images of a bundle.

Contract:
    requires  <a>, <b>          images (H, W, 3) uint8 of the same size
    optional  <region>          int64 (4,) box y0, x0, y1, x1 (exclusive ends), e.g. embed.region
    provides  metrics.values    float64 (5,): psnr_rgb, psnr_y, ssim, rmse, mae (whole image)
              meta["metrics"]   {"whole": {...}, "region": {...}} with the same names
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.stage import Param, Stage, StageContext, register_stage


@register_stage
class MetricsStage(Stage):
    name = "metrics"
    summary = "PSNR (RGB and Y), SSIM, RMSE, MAE between two images, whole and over a region"
    params = (
        Param("a", str, "mask.image", "first image key"),
        Param("b", str, "image.masked", "second image key"),
        Param("region", str, "embed.region", "key of a y0,x0,y1,x1 box to measure over as well ('' for none)"),
    )
    provides = ("metrics.values",)

    def requires_for(self, params):
        return (params["a"], params["b"])

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        from imnkit.metrics import compare, json_safe

        a = tensor_to_image(bundle.require(params["a"], stage=self.name), params["a"])
        b = tensor_to_image(bundle.require(params["b"], stage=self.name), params["b"])
        whole = compare(a, b)
        result = {"a": params["a"], "b": params["b"], "whole": {k: json_safe(v) for k, v in whole.to_dict().items()}}
        if params["region"] and params["region"] in bundle.tensors:
            box = tuple(int(v) for v in bundle.tensors[params["region"]].tolist())
            result["region_box"] = list(box)
            result["region"] = {k: json_safe(v) for k, v in compare(a, b, box).to_dict().items()}
        bundle.meta["metrics"] = result
        bundle.add("metrics.values", np.array(list(whole.to_dict().values()), dtype=np.float64))
