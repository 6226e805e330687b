"""extract stage: put the Mask off — recover the protected faces from the masked image and the aux.

Contract:
    requires  image.masked       (H, W, 3) uint8, the masked photo as saved (for ``detached``, also
                                 a re-encoded or resized copy)
              aux.regions        int64 (R, 4), aux.size int64 (2,), meta aux.* (from embed)
    provides  image.recovered    (H, W, 3) uint8; pixels outside the regions equal image.masked

The method is the aux's. Keyed methods (sealed, detached) decrypt with the key in the aux, unwrapped
with the run's passphrase or key file (options ``keys``) when it is wrapped; a wrong key, a changed
aux or changed carrier pixels fail authentication: IntegrityError, exit code 4, never bypassed.
Consistency checks come first (size, sha256 of the pixels, weights digest for inn); a mismatch is an
IntegrityError unless ``force`` is set, which tries anyway — authentication still applies.
"""

from __future__ import annotations

from typing import Any

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.protect.keyed import INN_NOTICE
from imnkit.errors import IntegrityError, refuse_unless_forced
from imnkit.stage import Param, Stage, StageContext, register_stage


@register_stage
class ExtractStage(Stage):
    name = "extract"
    summary = "Take the Mask off with the aux (and passphrase or key file): recover the protected faces"
    requires = ("image.masked", "aux.regions", "aux.size")
    provides = ("image.recovered",)
    params = (
        Param("weights", str, "", "inn: IMN weights; empty = the weights named in the aux"),
        Param("force", bool, False, "try even when the image does not look like the one masked (the result may be "
              "wrong; authentication of keyed methods is never skipped)"),
    )

    def weights_for(self, params):
        return (params["weights"],) if params["weights"] else ()

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        from imnkit.protect.keyed import is_keyed

        masked = tensor_to_image(bundle.require("image.masked", stage=self.name), "image.masked")
        if is_keyed(bundle):
            recovered = _recover_keyed(bundle, masked, params, ctx)
        else:
            recovered = _recover_inn(bundle, masked, params, ctx)
        bundle.add("image.recovered", recovered)


def _recover_keyed(bundle: Bundle, masked, params, ctx: StageContext):
    from imnkit.protect.keyed import unseal

    recovered, notes = unseal(masked, bundle, ctx.options.get("keys"), force=params["force"])
    bundle.meta.setdefault("notes", []).extend(notes)
    return recovered


def _recover_inn(bundle: Bundle, masked, params, ctx: StageContext):
    from imnkit.embedding import check_aux_matches, load_network, put_off_regions, read_aux
    from imnkit.weights import shipped_with_digest, weights_digest

    info = read_aux(bundle)
    weights = params["weights"] or info.weights
    if not params["weights"] and info.weights_sha256 and weights_digest(weights) != info.weights_sha256:
        # The name now resolves to newer weights: the ones the aux was made with, if still shipped.
        weights = shipped_with_digest(info.weights_sha256) or weights
    notes = refuse_unless_forced(check_aux_matches(info, masked, weights_digest(weights)), params["force"])
    bundle.meta.setdefault("notes", []).extend(notes)
    bundle.meta.setdefault("notes", []).append(INN_NOTICE)
    if masked.shape[:2] != info.size:
        raise IntegrityError("cannot recover: the image size differs from the aux's, even with --force")
    if not info.regions:
        bundle.meta.setdefault("notes", []).append("the aux has no face region: nothing to recover")
        return masked.copy()
    net = load_network(weights, ctx.device, ctx.models)
    return put_off_regions(net, masked, info, ctx.device)
