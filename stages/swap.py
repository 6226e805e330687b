"""swap stage: make the Mask photo — every selected face gets another identity, same pose and light.

Contract:
    requires  image.protected     (H, W, 3) uint8
              faces.*             from the align stage (boxes, scores, landmarks, points5, affine)
              meta swap.pinned    optional: one pool identity per face (a video's tracked people)
    provides  mask.image          (H, W, 3) uint8, equal to image.protected outside swap.regions
              swap.regions        int64 (N, 4) y0, x0, y1, x1 (exclusive) of the pixels changed, per face
              meta swap.identities  the replacement identity used for each face
              meta swap.treatments  per face: swap (natural), warp5 (pool face warped from 5 points) or
                                    obfuscate (strong pixelation); see imnkit.face.fallback
              meta swap.occluded    per face: fraction of its box where occluders were kept in front

Backends:
    classical (offline default): the replacement face of the built-in, licence-clean pool is warped
        onto each face's landmark geometry (piecewise affine over a triangulation), colour-matched,
        relit with the protected face's shading and blended with a feathered mask.
    simswap: SimSwap 224 (ArcFace identity latent + AdaIN generator) from the Hub, pasted back with a
        soft mask; the identity comes from the same pool.
Identities are picked from the pool by each face's apparent look (``assign``), with ``seed`` choosing among
close matches, so that faces of one photo differ; ``replace`` picks one.
Faces the align stage marks ``fallback`` (no 68 landmarks) and faces the swap left unchanged get the best
Mask that works (imnkit.face.fallback); with ``occlusion`` on, occluders found in front of each face
(glasses frames, medical masks, mics: imnkit.face.occlusion; hands: imnkit.face.hands) are put back
over the Mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.stage import Param, Stage, StageContext, register_stage


@register_stage
class SwapStage(Stage):
    name = "swap"
    summary = "Make the Mask photo: each face gets a replacement identity with the same pose, expression and light"
    requires = ("image.protected", "faces.boxes", "faces.scores", "faces.landmarks", "faces.points5", "faces.affine")
    provides = ("mask.image", "swap.regions")
    params = (
        Param("backend", str, "classical", "classical (offline) or simswap (Hub weights)", choices=("classical", "simswap")),
        Param("seed", int, 0, "deals replacement identities from the pool reproducibly", min=0),
        Param("replace", str, "", "use this pool identity for every face ('' = deal from the pool)"),
        Param("geometry", float, 1.0, "classical: 0 keeps the protected face's feature layout, 1 moves the features onto the replacement's (their shapes, so the expression, stay)", min=0.0, max=1.0),
        Param("min_distance", float, 0.6, "classical: try other pool identities while dlib says the Mask is closer than this to the original (0 = no check)", min=0.0, max=2.0),
        Param("assign", str, "look", "classical: look (an identity of the face's apparent gender presentation, age band and skin tone), seeded (a seeded deal of the pool) or similar (the identity nearest by dlib, still a different person)", choices=("look", "seeded", "similar")),
        Param("expression_passes", int, 2, "classical: re-read the Mask's landmarks and correct its expression this many times (each costs one more rendering; 0 is ~3x faster, e.g. for video)", min=0, max=4),
        Param("blend", str, "feather", "classical: feathered alpha or Poisson (seamless) blending", choices=("feather", "poisson")),
        Param("mouth", str, "synthetic", "classical: an open mouth's inside is drawn (synthetic), copied from the original face (original: its teeth identify the person; warns) or the replacement's own (identity)", choices=("synthetic", "original", "identity")),
        Param("generator", str, "simswap.224", "simswap: generator weights"),
        Param("arcface", str, "arcface.simswap", "simswap: identity encoder weights"),
        Param("occlusion", bool, True, "keep occluders found in front of a face (glasses frames, masks, mics) over the Mask"),
        Param("occlusion_strength", float, 1.0, "how far from skin colour a pixel must be to be an occluder (higher finds fewer)", min=0.3, max=5.0),
        Param("occlusion_hands", bool, True, "with occlusion, also keep hands found in front of a face (a hand holding a mic) over the Mask (MediaPipe hand models, ~60-200 ms per photo)"),
    )

    def weights_for(self, params):
        return (params["generator"], params["arcface"]) if params["backend"] == "simswap" else ()

    def uses_torch(self, params, options):
        return params["backend"] != "classical"

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        from imnkit.face.identities import assign_identities, get_identity, identity_names
        from imnkit.face.swap import SwapParams, swap_faces
        from imnkit.face.records import load_faces

        image = tensor_to_image(bundle.require("image.protected", stage=self.name), "image.protected")
        faces = load_faces(bundle)
        if not faces:
            bundle.add("mask.image", image.copy())
            bundle.add("swap.regions", np.zeros((0, 4), dtype=np.int64))
            bundle.meta["swap.identities"] = []
            return
        replace = get_identity(params["replace"]).name if params["replace"] else None
        natural = [i for i, f in enumerate(faces) if f.treatment == "swap"]
        nat_faces = [faces[i] for i in natural]
        # meta swap.pinned: one identity per face chosen by the caller (a video keeps one per tracked person)
        pinned = bundle.meta.get("swap.pinned")
        # meta faces.identity: the identity a faces file names for a face (None: dealt as usual)
        chosen = bundle.meta.get("faces.identity") or [None] * len(faces)
        per_face = [get_identity(pinned[i] if pinned else chosen[i]).name if (pinned or chosen[i]) else replace
                    for i in range(len(faces))]
        if pinned or any(chosen):
            replace = [per_face[i] for i in natural] if natural else replace
        if not nat_faces:
            mask_image, boxes, names = image.copy(), [], []
        elif params["backend"] == "classical":
            sp = SwapParams(geometry=params["geometry"], blend=params["blend"], expression_passes=params["expression_passes"],
                            mouth=params["mouth"])
            mask_image, boxes, names, distances = _classical(image, nat_faces, replace, sp, params)
            if any(d is not None for d in distances):
                bundle.meta["swap.distances"] = [None if d is None else round(float(d), 4) for d in distances]
        else:
            names = (list(replace) if isinstance(replace, list) else [replace] * len(nat_faces)) if replace else assign_identities(len(nat_faces), params["seed"], identity_names())
            dealt = assign_identities(len(nat_faces), params["seed"], identity_names())
            names = [n or d for n, d in zip(names, dealt)]
            mask_image, boxes = _simswap(image, nat_faces, names, params, ctx)
        mask_image, boxes, names, treatments = _fallbacks(image, mask_image, faces, natural, list(boxes), list(names), params,
                                                          per_face)
        if params["occlusion"]:
            from imnkit.face.occlusion import keep_occluders

            # Only natural swaps: a fallback face's landmarks are a mean face fitted to 5 points, so what
            # they call skin and occluder is a guess, and a wrong guess would put real pixels back.
            occl = [f if t == "swap" else None for f, t in zip(faces, treatments)]
            mask_image, fractions = keep_occluders(image, mask_image, faces,
                                                   [b if o is not None else None for b, o in zip(boxes, occl)],
                                                   strength=params["occlusion_strength"],
                                                   hands=params["occlusion_hands"])
            bundle.meta["swap.occluded"] = fractions
        bundle.meta["swap.treatments"] = treatments
        if params["mouth"] == "original" and params["backend"] == "classical" and "swap" in treatments:
            bundle.meta.setdefault("notes", []).append(
                "swap: mouth=original copies each open mouth's inside (teeth) of the original into the Mask")
        bundle.meta.setdefault("report", {})["swap"] = {"treatments": treatments}  # per face, in --json
        counts = {t: treatments.count(t) for t in ("swap", "warp5", "obfuscate") if t in treatments}
        if set(counts) != {"swap"}:
            bundle.meta.setdefault("notes", []).append(
                "faces: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
        regions = [list(b) for b in boxes if b is not None]
        bundle.add("mask.image", mask_image)
        bundle.add("swap.regions", np.array(regions, dtype=np.int64).reshape(-1, 4))
        bundle.meta["swap.identities"] = names


def _classical(image, faces, replace, sp, params):
    """The classical swap of ``faces``; ``replace``: one name, None (dealt), or one per face where a
    None is dealt (a faces file names identities for some faces only). -> image, boxes, names, distances."""
    from imnkit.face.swap import swap_faces

    n = len(faces)
    fixed = list(range(n)) if isinstance(replace, str) else [j for j in range(n) if isinstance(replace, list) and replace[j]]
    free = [j for j in range(n) if j not in fixed]
    out, boxes, names, distances = image, [None] * n, [None] * n, [None] * n
    for group, names_of in ((free, None), (fixed, replace)):
        if not group:
            continue
        want = names_of if isinstance(names_of, str) or names_of is None else [names_of[j] for j in group]
        result = swap_faces(out, [faces[j] for j in group], seed=params["seed"], replace=want, params=sp,
                            min_distance=params["min_distance"] or None, assign=params["assign"])
        out = result.image
        for k, j in enumerate(group):
            boxes[j], names[j] = result.face_regions[k], result.identities[k]
            distances[j] = result.distances[k] if result.distances else None
    return out, boxes, names, distances


def _fallbacks(image, mask_image, faces, natural, boxes, names, params, replace):
    """Give every face the natural swap did not change the best Mask that works; per-face lists out.

    A face whose treatment (from a faces file) is ``obfuscate`` is obfuscated, one marked ``warp5`` gets
    the pool face warped from its 5 points wherever it changes pixels (obfuscated otherwise)."""
    from imnkit.face.fallback import mask_fallback_face, obfuscate_face
    from imnkit.face.identities import assign_identities, get_identity, identity_names
    from imnkit.face.swap import SwapParams

    dealt = assign_identities(len(faces), params["seed"], identity_names())
    out_boxes, out_names, treatments = [None] * len(faces), [None] * len(faces), [None] * len(faces)
    for j, i in enumerate(natural):
        out_boxes[i], out_names[i], treatments[i] = boxes[j], names[j], "swap"
    for i, face in enumerate(faces):
        if treatments[i] == "swap" and out_boxes[i] is not None:
            continue
        if treatments[i] == "swap":  # the natural swap changed nothing: never leave a face bare
            mask_image, out_boxes[i] = obfuscate_face(mask_image, face)
            treatments[i] = "obfuscate"
            continue
        if face.treatment == "obfuscate":
            mask_image, out_boxes[i] = obfuscate_face(mask_image, face)
            treatments[i] = "obfuscate"
            continue
        name = (replace[i] if isinstance(replace, list) else replace) or dealt[i]
        mask_image, out_boxes[i], treatments[i] = mask_fallback_face(
            mask_image, face, get_identity(name), SwapParams(geometry=params["geometry"], blend=params["blend"],
                                                  expression_passes=params["expression_passes"],
                                                  mouth=params["mouth"]),
            min_cover=0.0 if face.treatment == "warp5" else 0.6)
        out_names[i] = name if treatments[i] == "warp5" else None
    return mask_image, out_boxes, out_names, treatments


def _simswap(image, faces, names, params, ctx):
    from imnkit.face.hub_swap import identity_latent, simswap_faces
    from imnkit.face.identities import get_identity
    from imnkit.face.align import five_points
    from imnkit.weights import build

    generator = ctx.cached(("model", params["generator"], str(ctx.device)), lambda: build(params["generator"], ctx.device, like="simswap.224")[0])
    arcface = ctx.cached(("model", params["arcface"], str(ctx.device)), lambda: build(params["arcface"], ctx.device, like="arcface.simswap")[0])
    latents = []
    for name in names:
        ident = get_identity(name)
        latents.append(ctx.cached(("latent", name, params["arcface"], str(ctx.device)),
                                  lambda ident=ident: identity_latent(arcface, ident.image, five_points(ident.landmarks), ctx.device)))
    return simswap_faces(image, [f.points5 for f in faces], latents, generator, ctx.device)
