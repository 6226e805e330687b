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

from .bundle import Bundle
from .errors import BundleError, ImnkitError, InputError, UsageError
from .imageio import check_output_path, check_rgb8, load_image, save_png
from .protect.keyed import check_aux_bytes, is_keyed, open_aux, unseal
from .protect.crypto import AuthenticationError
from .protect.keys import KeySource, warn_if_weak
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

    def png(self, *, with_aux: bool = True) -> bytes:
        """The masked photo as PNG bytes, with the aux inside when it is sealed to recipients (``with_aux``)."""
        from .imageio import encode_png
        from .protect.container import with_aux as embed

        data = encode_png(self.masked)
        return embed(data, self.aux) if with_aux and _sealed_to_recipients(self.aux) else data


def mask(image: np.ndarray, recipe: str = "mask", *, passphrase: str | None = None, key_file: bytes | None = None,
         recipients: list | None = None, device: str | None = None, seed: int | None = None,
         allow_no_face: bool = False, **overrides: Any) -> MaskResult:
    """Put a Mask over every face of ``image`` and hide the originals; returns the masked photo and aux.

    Args:
        image: (H, W, 3) uint8 RGB.
        recipe: a built-in recipe name (``mask``, ``mask-inn``, ``mask-hub``) or a path to a TOML recipe.
        passphrase, key_file: lock the key in the aux with a passphrase or a 32-byte key (one of them);
            a passphrase under 12 characters raises a WeakPassphraseWarning.
        recipients: seal the keys to these public keys instead (``imnkit1...`` strings or
            :class:`~imnkit.protect.recipients.Recipient`): nothing secret is needed to mask, and
            ``result.png()`` gives the masked PNG with the aux inside.
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
    warn_if_weak(passphrase)
    runner = _runner(recipe, overrides, device, allow_no_face)
    options = {"keys": KeySource(passphrase=passphrase, key_file=key_file, recipients=_recipients(recipients)),
               "seed": seed}
    bundle = Bundle(tensors={INPUT_IMAGE_KEY: np.ascontiguousarray(image).copy()})
    bundle = runner.process(Path("<array>"), bundle=bundle, options=options)
    aux = bundle.subset("aux.")
    aux.history = []
    return MaskResult(
        masked=np.asarray(bundle.tensors["image.masked"]), aux=aux.to_bytes(), mask=np.asarray(bundle.tensors["mask.image"]),
        regions=np.asarray(bundle.tensors["aux.regions"]).tolist(), faces=_faces(bundle), report=dict(bundle.meta.get("report", {})), notes=list(bundle.meta.get("notes", [])))


def unmask(masked: np.ndarray | bytes, aux: bytes | None = None, *, passphrase: str | None = None,
           key_file: bytes | None = None, identity=None, faces: list[int] | None = None, force: bool = False,
           device: str = "auto") -> np.ndarray:
    """Take the Mask off: the protected photo from a masked photo and its aux bytes.

    ``masked``: (H, W, 3) uint8, or the masked PNG file's bytes (then ``aux`` may be omitted when the
    aux rides inside it). ``identity``: an :class:`~imnkit.protect.recipients.Identity`, a path to an
    identity file, or a list of them (each is tried). ``faces``: take off only these faces (indices, as
    ``imnkit inspect`` lists them); the others stay masked.

    Raises IntegrityError (a wrong key, passphrase, key file or identity, a changed aux or changed masked
    pixels, an aux not locked the way asked: never bypassed, ``force`` only skips the consistency checks)
    and UsageError (a locked aux without its passphrase, key file or identity).
    """
    if isinstance(masked, (bytes, bytearray)):
        if aux is None:
            aux = _aux_inside(bytes(masked), "the masked PNG")
        masked = load_image("masked.png", data=bytes(masked))
    check_rgb8(masked, "masked")
    if aux is None:
        raise UsageError("no aux given, and an array holds none", hint="pass the aux bytes, or the masked PNG's bytes")
    source = KeySource(passphrase=passphrase, key_file=key_file, identities=_identities(identity))
    return _unmask_aux(masked, aux, "the aux", source, force=force, device=device, weights="", faces=faces)[0]


def _recipients(recipients) -> list | None:
    if recipients is None:
        return None
    from .protect.recipients import Recipient, parse_recipient

    items = [recipients] if isinstance(recipients, (str, Recipient)) else list(recipients)
    return [r if isinstance(r, Recipient) else parse_recipient(str(r)) for r in items]


def _identities(identity) -> list:
    if identity is None:
        return []
    from .protect.recipients import Identity, read_identity

    items = identity if isinstance(identity, (list, tuple)) else [identity]
    return [i if isinstance(i, Identity) else read_identity(i) for i in items]


def _sealed_to_recipients(aux: bytes) -> bool:
    try:
        header = Bundle.from_bytes(aux, framework="numpy").meta.get("aux.header") or {}
    except ImnkitError:
        return False
    return isinstance(header, dict) and isinstance(header.get("key"), dict) and header["key"].get("wrap") == "recipients"


def _aux_inside(png: bytes, where: str) -> bytes:
    """The aux in a masked PNG's ``imAX`` chunk; UsageError when it has none."""
    from .protect.container import aux_of

    try:
        found = aux_of(png)
    except InputError:
        found = None
    if found is None:
        raise UsageError(f"{where} holds no aux, and none was given",
                         hint="pass --aux FILE (the aux rides inside the PNG only when masked for --recipient)")
    return found


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
                weights: str, faces: list[int] | None = None,
                allow_unkeyed: bool = False) -> tuple[np.ndarray, list[str], int]:
    """(recovered, notes, regions) from a masked image (array, or a callable that reads it) and aux bytes.

    A keyed aux is checked byte-exact and opened with numpy alone; an inn aux goes through the
    extract stage (torch). Any aux is checked before the image is read. Every way a keyed aux can fail
    to open (unparsable bytes, a malformed header, a wrong key) is the one AuthenticationError.
    """
    aux = open_aux(raw, where)
    if is_keyed(aux):
        check_aux_bytes(raw, aux)
        image = masked() if callable(masked) else masked
        recovered, notes = unseal(image, aux, source, force=force, faces=faces)
        return recovered, notes, int(aux.tensors["aux.regions"].reshape(-1, 4).shape[0])
    if source is not None and source.expects is not None and not allow_unkeyed:
        raise AuthenticationError()  # an unkeyed (inn) aux where a locked one was asked for: substituted?
    if faces is not None:
        raise UsageError("faces come off one at a time only from the keyed methods", hint="drop --face")
    from .devices import resolve_device
    from .embedding import read_aux

    dev = resolve_device(device)  # an unavailable device fails before any work
    aux = Bundle.from_bytes(raw, source=where)
    try:
        read_aux(aux)
    except BundleError as err:  # a bundle, but no aux (the wrong file given): a usage problem, not a change
        raise UsageError(err.message, hint=err.hint) from None
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


def extract_file(masked: str | Path, aux: str | Path | None = None, output: str | Path | None = None, *,
                 weights: str = "", force: bool = False, device: str = "auto", overwrite: bool = False,
                 keys: KeySource | None = None, on_frame=None, faces: list[int] | None = None,
                 face_at: tuple[int, int] | None = None, audit_log: str | Path | None = None,
                 allow_unkeyed: bool = False) -> ExtractResult:
    """Recover the protected photo from a masked PNG and its aux; write it as PNG atomically.

    ``aux``: the sidecar aux file; None: the aux inside the masked PNG (masked for recipients).
    ``keys``: the passphrase, key file or identities (see :mod:`imnkit.protect.keys`); given, the aux
    must be locked that way (a bare or inn aux is refused; ``allow_unkeyed`` accepts an inn aux).
    ``faces`` / ``face_at`` (x, y): take off only those faces. ``audit_log``: append a record there.
    A masked clip (a video aux, or a video suffix) gives ``{stem}.recovered.mkv`` (docs/video.md);
    ``on_frame(done, total)`` then follows its progress.
    """
    masked = Path(masked)
    aux = Path(aux) if aux is not None else None
    if is_video_path(masked) or (aux is not None and is_video_aux_file(aux)):  # a clip: imnkit.video
        if face_at is not None:  # aux None: the aux attached to the clip (recipients)
            raise UsageError("--face-at is for photos (a clip's faces move)",
                             hint="use --face N: `imnkit inspect` lists the tracked faces")
        from .video.unmask import extract_video

        out, regions, notes = extract_video(masked, aux, Path(output) if output else None, keys=keys,
                                            overwrite=overwrite, on_frame=on_frame, faces=faces)
        _audit(audit_log, "extract", masked, faces if faces is not None else "all", keys)
        return ExtractResult(output=out, regions=regions, notes=notes)
    out = Path(output) if output else default_recovered_path(masked)
    inputs = (masked,) if aux is None else (masked, aux)
    check_output_path(out, overwrite=overwrite, inputs=inputs)
    # the masked file read once: for the aux inside it, and for the audit record's digest
    data = _read(masked) if aux is None or audit_log is not None else None
    if aux is None:
        raw, where = _aux_inside(data, str(masked)), f"{masked} (its aux)"
    else:
        # a missing or unreadable file fails here with its own message; bytes that are no aux, as one failure
        raw, where = _read(aux), str(aux)
    image = lambda: load_image(masked, data=data)  # noqa: E731
    if face_at is not None:
        faces = sorted(set(faces or []) | {_face_at(raw, where, face_at)})
    recovered, notes, regions = _unmask_aux(image, raw, where, keys, force=force, device=device, weights=weights,
                                            faces=faces, allow_unkeyed=allow_unkeyed)
    save_png(out, recovered, overwrite=overwrite, inputs=inputs)
    _audit(audit_log, "extract", masked, faces if faces is not None else "all", keys, data)
    return ExtractResult(output=out, regions=regions if faces is None else len(faces), notes=notes)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read it ({err.strerror or type(err).__name__})") from None


def _face_at(raw: bytes, where: str, point: tuple[int, int]) -> int:
    from .protect.keyed import face_at, is_keyed, read_header as read_aux_header

    aux = open_aux(raw, where)
    if not is_keyed(aux):
        raise UsageError("faces come off one at a time only from the keyed methods", hint="drop --face-at")
    return face_at(read_aux_header(aux), point[0], point[1])


def _audit(log, command: str, masked: Path, faces, keys: KeySource | None, data: bytes | None = None) -> None:
    """Append the record of an unmasking to ``log`` (``data``: the masked file's bytes, when read already)."""
    if log is None:
        return
    import hashlib

    from .protect.audit import append

    who = (keys.opened_by if keys is not None else None) or (keys.expects if keys is not None else None) or "none"
    digest = hashlib.sha256(data if data is not None else _read(masked)).hexdigest()
    append(log, command=command, file=str(masked), sha256=digest, faces=faces, recipient=who)
