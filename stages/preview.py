"""preview stage: a contact sheet per face, like the paper's Fig. 4 (only with --preview).

Contract:
    requires  image.protected, mask.image, image.masked   (H, W, 3) uint8
              aux.regions, aux.size, meta aux.*           (from embed)
              faces.boxes                                 int64 (N, 4)
    provides  preview.image   (rows x 6 panels) uint8: protected | Mask | masked | |Mask - masked| x20 |
                              recovered | |protected - recovered| x20, one row per face

It recovers from the exact 8-bit masked pixels, as `imnkit extract` does from the saved PNG.
The stage does nothing unless --preview (option ``preview``) or its ``enabled`` parameter is set.

The sheet shows the original faces in the clear: the built-in recipes write it as
``{stem}.PRIVATE-preview.png`` with ``private = true`` (mode 0600), never beside the masked photo
under a name that could pass for the shareable one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.stage import Param, Stage, StageContext, register_stage

PANEL = 192


def _panel(image: np.ndarray, box, size: int = PANEL) -> np.ndarray:
    y0, x0, y1, x1 = box
    crop = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    return np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS))


def _diff(a: np.ndarray, b: np.ndarray, gain: float = 20.0) -> np.ndarray:
    return np.clip(np.abs(a.astype(np.int16) - b.astype(np.int16)) * gain, 0, 255).astype(np.uint8)


def contact_sheet(protected, mask, masked, recovered, boxes) -> np.ndarray:
    rows = []
    for box in boxes:
        y0, x0, y1, x1 = box
        side = int(max(y1 - y0, x1 - x0) * 1.3)
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        h, w = protected.shape[:2]
        sq = (max(0, cy - side // 2), max(0, cx - side // 2), min(h, cy + side // 2), min(w, cx + side // 2))
        panels = [_panel(protected, sq), _panel(mask, sq), _panel(masked, sq), _diff(_panel(mask, sq), _panel(masked, sq))]
        if recovered is None:  # nothing here can take it off (sealed to recipients): grey panels, not a guess
            panels += [np.full((PANEL, PANEL, 3), 128, np.uint8)] * 2
        else:
            panels += [_panel(recovered, sq), _diff(_panel(protected, sq), _panel(recovered, sq))]
        gap = np.full((PANEL, 4, 3), 255, np.uint8)
        row = [panels[0]]
        for p in panels[1:]:
            row += [gap, p]
        rows.append(np.concatenate(row, axis=1))
    if not rows:
        return np.full((PANEL, PANEL, 3), 255, np.uint8)
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    out = [rows[0]]
    for r in rows[1:]:
        out += [gap, r]
    return np.concatenate(out, axis=0)


@register_stage
class PreviewStage(Stage):
    name = "preview"
    summary = "Contact sheet per face: protected | Mask | masked | diff x20 | recovered | diff x20"
    requires = ("image.protected", "mask.image", "image.masked", "aux.regions", "aux.size", "faces.boxes")
    provides = ("preview.image",)
    params = (Param("enabled", bool, False, "build the sheet even without --preview"),)

    def uses_torch(self, params, options):
        return bool(params["enabled"] or options.get("preview"))

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        if not (params["enabled"] or ctx.options.get("preview")):
            return
        protected = tensor_to_image(bundle.require("image.protected"), "image.protected")
        mask = tensor_to_image(bundle.require("mask.image"), "mask.image")
        masked = tensor_to_image(bundle.require("image.masked"), "image.masked")
        recovered = _recovered(bundle, masked, ctx)
        if recovered is None:
            bundle.meta.setdefault("notes", []).append(
                "preview: sealed to recipients, so nothing on this machine takes the Mask off: the recovered "
                "panels are grey (check them with imnkit extract --identity)")
        boxes = [tuple(b) for b in bundle.require("faces.boxes").tolist()]
        bundle.add("preview.image", contact_sheet(protected, mask, masked, recovered, boxes))


def _recovered(bundle: Bundle, masked: np.ndarray, ctx: StageContext) -> np.ndarray | None:
    """What extraction will give back, by the aux's method (keyed: with the run's passphrase or key file);
    None when the keys are sealed to recipients and this run holds no identity."""
    from imnkit.protect.keyed import is_keyed, recover

    keys = ctx.options.get("keys")
    if is_keyed(bundle) and keys is not None and keys.wrap == "recipients" and not keys.identities:
        return None
    if is_keyed(bundle):
        return recover(masked, bundle, ctx.options.get("keys"))[0]
    from imnkit.embedding import load_network, put_off_regions, read_aux

    info = read_aux(bundle)
    if not info.regions:
        return masked.copy()
    return put_off_regions(load_network(info.weights, ctx.device, ctx.models), masked, info, ctx.device)
