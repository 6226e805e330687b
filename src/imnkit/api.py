"""The Python API: mask and unmask images in memory, and the file-level extract behind `imnkit extract`.

``mask`` and ``unmask`` (exported as ``imnkit.mask`` / ``imnkit.unmask``) take and return
(H, W, 3) uint8 RGB numpy arrays and the aux as bytes, so services and notebooks need no files.
Models are loaded once per process and reused (one runner per recipe, overrides and device).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import Bundle, read_header
from .errors import UsageError
from .imageio import check_output_path, check_rgb8, load_image, save_png
from .protect.keyed import check_aux_bytes, is_keyed, unseal
from .protect.keys import KeySource
from .video import is_video_aux_file, is_video_path

# torch and the stages are imported only where needed: taking a keyed Mask off needs neither
# (a whole `imnkit extract` process then starts in a fraction of torch's import time).
_RUNNERS: dict[tuple, Any] = {}
_RUNNERS_LOCK = threading.Lock()
_MODELS: dict[tuple, Any] = {}  # the extract stage's models (inn's network), shared by unmask calls


@dataclass
class MaskResult:
    """What :func:`mask` returns. ``aux`` is the key to the faces: keep it, share only ``masked``."""

    masked: np.ndarray  # (H, W, 3) uint8, the masked photo (save it losslessly, e.g. PNG)
    aux: bytes  # the aux file's bytes ({stem}.aux.safetensors)
    mask: np.ndarray  # (H, W, 3) uint8, the Mask photo before hiding
    regions: list[list[int]] = field(default_factory=list)  # the hidden boxes [y0, x0, y1, x1]
    faces: list[dict] = field(default_factory=list)  # per face: box [y0, x0, y1, x1] and what the swap did
    report: dict = field(default_factory=dict)  # what the stages report (e.g. embed's method, codec, quality)
    notes: list[str] = field(default_factory=list)


def mask(image: np.ndarray, recipe: str = "mask", *, passphrase: str | None = None, key_file: bytes | None = None,
         device: str | None = None, seed: int | None = None, allow_no_face: bool = False,
         **overrides: Any) -> MaskResult:
    """Put a Mask over every face of ``image`` and hide the originals; returns the masked photo and aux.

    Args:
        image: (H, W, 3) uint8 RGB.
        recipe: a built-in recipe name (``mask``, ``mask-inn``, ``mask-hub``) or a path to a TOML recipe.
        passphrase, key_file: lock the key in the aux with a passphrase or a 32-byte key (one of them).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for every stage (default: the recipe's).
        seed: seed for every stage that draws randomly.
        allow_no_face: a photo with no face passes through unchanged instead of raising NoFaceError.
        overrides: recipe parameters as ``stage__param=value`` (or ``**{"stage.param": value}``),
            e.g. ``embed__method="detached"``.

    Raises:
        ImnkitError subclasses: UsageError (bad recipe, parameter, device), NoFaceError, ...

    Example:
        >>> import numpy as np, imnkit                                        # doctest: +SKIP
        >>> from PIL import Image                                             # doctest: +SKIP
        >>> photo = np.asarray(Image.open("examples/astronaut.jpg").convert("RGB"))  # doctest: +SKIP
        >>> result = imnkit.mask(photo, passphrase="a long passphrase")       # doctest: +SKIP
        >>> back = imnkit.unmask(result.masked, result.aux, passphrase="a long passphrase")  # doctest: +SKIP
    """
    from .recipe import INPUT_IMAGE_KEY

    check_rgb8(image, "image")
    runner = _runner(recipe, overrides, device, allow_no_face)
    options = {"keys": KeySource(passphrase=passphrase, key_file=key_file), "seed": seed}
    bundle = Bundle(tensors={INPUT_IMAGE_KEY: np.ascontiguousarray(image).copy()})
    bundle = runner.process(Path("<array>"), bundle=bundle, options=options)
    aux = bundle.subset("aux.")
    aux.history = []
    return MaskResult(
        masked=np.asarray(bundle.tensors["image.masked"]), aux=aux.to_bytes(), mask=np.asarray(bundle.tensors["mask.image"]),
        regions=np.asarray(bundle.tensors["aux.regions"]).tolist(), faces=_faces(bundle), report=dict(bundle.meta.get("report", {})), notes=list(bundle.meta.get("notes", [])))


def unmask(masked: np.ndarray, aux: bytes, *, passphrase: str | None = None, key_file: bytes | None = None,
           force: bool = False, device: str = "auto") -> np.ndarray:
    """Take the Mask off: the protected photo from a masked photo and its aux bytes.

    Raises IntegrityError (a wrong key, passphrase or key file, a changed aux or changed masked
    pixels: never bypassed, ``force`` only skips the consistency checks) and UsageError (a locked aux
    without its passphrase or key file).
    """
    check_rgb8(masked, "masked")
    source = KeySource(passphrase=passphrase, key_file=key_file)
    return _unmask_aux(masked, aux, "the aux", source, force=force, device=device, weights="")[0]


def _runner(recipe: str, overrides: dict[str, Any], device: str | None, allow_no_face: bool):
    from .recipe import Runner, load_recipe, resolve_recipe_path

    sets = sorted(f"{k.replace('__', '.', 1)}={v}" for k, v in overrides.items())
    key = (recipe, tuple(sets), device, allow_no_face)
    with _RUNNERS_LOCK:
        if key not in _RUNNERS:
            if not isinstance(recipe, str) or not recipe:
                raise UsageError("recipe must be a recipe name or a path")
            _RUNNERS[key] = Runner(load_recipe(resolve_recipe_path(recipe), sets=sets, device=device),
                                   options={"allow_no_face": allow_no_face})
        return _RUNNERS[key]


def _faces(bundle: Bundle) -> list[dict]:
    boxes = bundle.tensors.get("faces.boxes")
    treatments = bundle.meta.get("swap.treatments") or []
    out = []
    for i, box in enumerate(boxes.tolist() if boxes is not None else []):
        face = {"box": [int(v) for v in box]}
        if i < len(treatments):
            face["treatment"] = treatments[i]
        out.append(face)
    return out


def _unmask_aux(masked, raw: bytes, where: str, source: KeySource | None, *, force: bool, device: str,
                weights: str) -> tuple[np.ndarray, list[str], int]:
    """(recovered, notes, regions) from a masked image (array, or a callable that reads it) and aux bytes.

    A keyed aux is checked byte-exact and opened with numpy alone; an inn aux goes through the
    extract stage (torch). Any aux is checked before the image is read.
    """
    aux = Bundle.from_bytes(raw, source=where, framework="numpy")
    if is_keyed(aux):
        check_aux_bytes(raw, aux)
        image = masked() if callable(masked) else masked
        recovered, notes = unseal(image, aux, source, force=force)
        return recovered, notes, int(aux.tensors["aux.regions"].reshape(-1, 4).shape[0])
    from .devices import resolve_device
    from .embedding import read_aux

    dev = resolve_device(device)  # an unavailable device fails before any work
    aux = Bundle.from_bytes(raw, source=where)
    read_aux(aux)
    image = masked() if callable(masked) else masked
    recovered, notes = _extract_inn(image, aux, force=force, device=dev, weights=weights)
    return recovered, notes, int(aux.tensors["aux.regions"].shape[0])


def _extract_inn(masked: np.ndarray, aux: Bundle, *, force: bool, device,
                 weights: str) -> tuple[np.ndarray, list[str]]:
    """Run the extract stage on an image and an inn aux bundle on ``device`` (resolved); (recovered, notes)."""
    import torch

    from .stage import StageContext, get_stage, run_stage

    bundle = Bundle(tensors={"image.masked": torch.from_numpy(np.ascontiguousarray(masked)), **aux.tensors},
                    meta=dict(aux.meta), source=aux.source)
    stage = get_stage("extract")
    params = stage.resolve_params({"weights": weights, "force": force})
    ctx = StageContext(device=device, models=_MODELS, options={})
    with torch.inference_mode():
        run_stage(stage, bundle, params, ctx)
    return np.asarray(bundle.tensors["image.recovered"]), list(bundle.meta.get("notes", []))


# -- files: `imnkit extract` ------------------------------------------------------------------------
def default_recovered_path(masked: Path) -> Path:
    """'photo.masked.png' -> 'photo.recovered.png' beside it."""
    from .batch import output_stem

    return masked.with_name(f"{output_stem(masked)}.recovered.png")


@dataclass
class ExtractResult:
    output: Path
    regions: int
    notes: list[str] = field(default_factory=list)


def extract_file(masked: str | Path, aux: str | Path, output: str | Path | None = None, *, weights: str = "",
                 force: bool = False, device: str = "auto", overwrite: bool = False,
                 keys: KeySource | None = None, on_frame=None) -> ExtractResult:
    """Recover the protected photo from a masked PNG and its aux; write it as PNG atomically.

    ``keys``: the passphrase or key file when the aux's key is wrapped (see :mod:`imnkit.protect.keys`).
    A masked clip (a video aux, or a video suffix) gives ``{stem}.recovered.mkv`` (docs/video.md);
    ``on_frame(done, total)`` then follows its progress.
    """
    masked, aux = Path(masked), Path(aux)
    if is_video_path(masked) or is_video_aux_file(aux):  # a clip: imnkit.video (needs imnkit[video])
        from .video.unmask import extract_video

        out, regions, notes = extract_video(masked, aux, Path(output) if output else None, keys=keys,
                                            overwrite=overwrite, on_frame=on_frame)
        return ExtractResult(output=out, regions=regions, notes=notes)
    out = Path(output) if output else default_recovered_path(masked)
    check_output_path(out, overwrite=overwrite, inputs=(masked, aux))
    read_header(aux)  # a missing, truncated or non-bundle file fails here, with its own message
    recovered, notes, regions = _unmask_aux(lambda: load_image(masked), aux.read_bytes(), str(aux), keys,
                                            force=force, device=device, weights=weights)
    save_png(out, recovered, overwrite=overwrite, inputs=(masked, aux))
    return ExtractResult(output=out, regions=regions, notes=notes)
