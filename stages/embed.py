"""embed stage: put the Mask on — hide the protected face regions in or beside the Mask photo.

Methods (``method``):
    sealed    (default) the regions compressed, encrypted (AES-256-GCM, fresh key per photo, kept in
              the aux, optionally wrapped by a passphrase or key file) and embedded invisibly in the
              Mask photo's own face regions in a keyed order (imnkit.protect.keyed)
    detached  the same ciphertext, lossless by default, kept in the aux; image.masked = mask.image
    inn       the paper's invertible network (imnkit.embedding): no key — anyone with imnkit can
              take this Mask off; kept to reproduce the paper

Contract:
    requires  image.protected    (H, W, 3) uint8, the original photo
              mask.image         (H, W, 3) uint8, the Mask photo (same size)
    optional  swap.regions       int64 (N, 4) boxes y0, x0, y1, x1 (exclusive) of the changed pixels;
                                 without it the whole image is one region
              dwt.image.protected, dwt.mask.image
                                 (inn) Haar coefficients of the whole images (the dwt stage); used,
                                 sliced at each region, instead of transforming the crops again
    provides  image.masked       (H, W, 3) uint8: exactly the pixels that will be saved
              aux.regions        int64 (R, 4) the (merged, even-sided) regions that were hidden
              aux.size           int64 (2,) image height, width
              aux.key | aux.key_wrapped, aux.payload (detached)
                                 uint8 (keyed methods): the content key, bare or wrapped; the ciphertext
              meta aux.*         format, method, header (keyed) or weights/seed (inn), sha256 of the masked pixels
              embed.region       int64 (4,) the bounding box of all regions (for the metrics stage)
              meta report.embed  method, number of regions and (keyed) codec, quality, bytes, bits per region pixel

The passphrase or key file comes from the run's options (``keys``), never from a parameter, so it
is never recorded in the bundle history.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.boxes import even_box, merge_boxes, union_box
from imnkit.protect.keyed import INN_NOTICE
from imnkit.weights import DEFAULT_IMN
from imnkit.stage import Param, Stage, StageContext, register_stage



@register_stage
class EmbedStage(Stage):
    name = "embed"
    summary = "Hide the protected face regions: sealed (encrypted, in the Mask photo), detached (encrypted, in the aux) or inn (the paper's network, no key)"
    requires = ("image.protected", "mask.image")
    optional = ("swap.regions", "dwt.image.protected", "dwt.mask.image")
    provides = ("image.masked", "aux.regions", "aux.size", "embed.region")
    params = (
        Param("method", str, "sealed", "sealed (encrypted, embedded in the Mask photo), detached (encrypted, "
              "in the aux) or inn (the paper's network: no key, anyone with imnkit can take it off)",
              choices=("sealed", "detached", "inn")),
        Param("masked_psnr", float, 52.0, "sealed: the masked-vs-Mask PSNR (dB, RGB, over the face regions) the "
              "hidden payload may cost; lower hides a larger payload, so the faces come back closer", min=40.0, max=70.0),
        Param("codec", str, "auto", "keyed methods: auto (sealed: lossless if it fits, else the best AVIF "
              "quality that fits; detached: lossless), lossless or avif", choices=("auto", "lossless", "avif")),
        Param("quality", int, 99, "keyed methods, AVIF: the highest quality tried (sealed) or the one used "
              "(detached with codec=avif)", min=1, max=99),
        Param("weights", str, DEFAULT_IMN, "inn: IMN weights, a registry name or a path to a .safetensors file"),
        Param("seed", int, 0, "inn: seed of the auxiliary noise n (stored in the aux)", min=0),
        Param("margin", int, 8, "pixels added around each changed region before hiding", min=0, max=256),
        Param("refine", int, 0, "inn: optimisation steps on the masked pixels against what extraction will "
              "compute (lower recovery + masked error, best point kept; each step costs ~3 network passes: "
              "minutes on a CPU for a large face, seconds on a GPU; recipes/mask-inn.toml uses 30, "
              "see docs/model-card.md)", min=0, max=1000),
    )

    def weights_for(self, params):
        return (params["weights"],) if params["method"] == "inn" else ()

    def uses_torch(self, params, options):
        return params["method"] == "inn"

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        protected = tensor_to_image(bundle.require("image.protected", stage=self.name), "image.protected")
        mask = tensor_to_image(bundle.require("mask.image", stage=self.name), "mask.image")
        h, w = protected.shape[:2]
        if "swap.regions" in bundle.tensors:
            raw = [tuple(int(v) for v in row) for row in bundle.tensors["swap.regions"].reshape(-1, 4).tolist()]
        else:
            raw = [(0, 0, h, w)]
        padded = [even_box(b, h, w, params["margin"]) for b in raw]
        boxes = merge_boxes(padded)
        if params["method"] == "inn":
            masked, aux, report = _hide_inn(bundle, protected, mask, boxes, params, ctx)
        else:
            treatments = _region_treatments(padded, boxes, bundle.meta.get("swap.treatments"))
            masked, aux, report = _hide_keyed(protected, mask, boxes, params, ctx, treatments)
        bundle.add("image.masked", masked)
        for key, value in aux.tensors.items():
            bundle.add(key, value)
        bundle.meta.update(aux.meta)
        bundle.meta.setdefault("report", {})["embed"] = {"method": params["method"], "regions": len(boxes), **report}
        union = union_box(boxes)  # (0, 0, 0, 0) when there is none
        if not boxes:
            bundle.meta.setdefault("notes", []).append("no face region: the photo passed through unchanged")
        bundle.add("embed.region", np.array(union, dtype=np.int64))


def _region_treatments(padded: list, boxes: list, treatments) -> list[str] | None:
    """What the swap did in each hidden region (faces merged into one region joined by '+'), when the
    swap's per-face list matches its regions (a face it left unchanged has no region)."""
    if not isinstance(treatments, list) or len(treatments) != len(padded):
        return None
    out = []
    for y0, x0, y1, x1 in boxes:
        inside = [t for t, b in zip(treatments, padded) if y0 <= b[0] and x0 <= b[1] and b[2] <= y1 and b[3] <= x1]
        out.append("+".join(sorted(set(map(str, inside)))) or "swap")
    return out


def _hide_keyed(protected, mask, boxes, params, ctx: StageContext, treatments=None):
    from imnkit.protect.keyed import hide

    labels = ctx.options.get("aux_face_labels")  # a video: regions -> each one's tracked person, for its face key
    result = hide(protected, mask, boxes, method=params["method"], source=ctx.options.get("keys"),
                  masked_psnr=params["masked_psnr"], codec=params["codec"], max_quality=params["quality"],
                  key=ctx.options.get("content_key"), context=ctx.options.get("aux_context"),  # a video's one key
                  treatments=treatments, face_labels=labels(boxes) if labels is not None else None)
    return result.masked, result.aux, result.report


def _hide_inn(bundle: Bundle, protected, mask, boxes, params, ctx: StageContext):
    from imnkit.embedding import load_network, put_on_regions
    from imnkit.weights import weights_digest

    net = load_network(params["weights"], ctx.device, ctx.models)
    report = ctx.options.get("on_steps")  # the CLI's progress bar: refine takes minutes on a CPU
    progress = None if report is None else (lambda done, total: report("refine", done, total))
    coeffs = None
    if "dwt.image.protected" in bundle.tensors and "dwt.mask.image" in bundle.tensors:
        coeffs = (bundle.tensors["dwt.image.protected"], bundle.tensors["dwt.mask.image"])
    result = put_on_regions(net, protected, mask, boxes, seed=params["seed"], weights=params["weights"],
                            weights_digest=weights_digest(params["weights"]), device=ctx.device, coeffs=coeffs,
                            refine=params["refine"], progress=progress)
    bundle.meta.setdefault("notes", []).append(INN_NOTICE)
    return result.masked, result.aux, {}
