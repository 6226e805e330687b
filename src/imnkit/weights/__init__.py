"""The weights registry: one name per model file, with where it comes from and how to build it.

A :class:`WeightSpec` names an architecture (``arch``: ``"module:function"`` building the nn.Module),
and a source:

- ``package``: a safetensors file shipped inside imnkit (``imnkit/weights/<filename>``),
- ``hub``: a Hugging Face Hub file (``repo_id``, ``filename``, pinned ``revision``, ``sha256``),
- ``local``: a path on disk (also what a recipe gets when its ``weights`` parameter is a path).

Loading is strict: a checkpoint filter unwraps wrapper dicts and ``module.`` prefixes explicitly,
then ``load_state_dict(strict=True)``; mismatches raise WeightsError listing the sorted keys.
Pickled ``.pth`` files are read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import UsageError, WeightsError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_IMN = "imn.default"  # the shipped invertible network (method inn)


@dataclass(frozen=True)
class WeightSpec:
    name: str
    arch: str  # "module:function" returning an nn.Module (built lazily)
    source: str  # "package" | "hub" | "local"
    filename: str  # file in the package, in the Hub repo, or a local path
    license: str
    origin_url: str
    description: str
    repo_id: str | None = None
    repo_type: str = "model"  # "model" or "space"
    # A commit hash. None only for third-party mirrors whose commit could not be read when the entry
    # was written (no Hub access): then the file's sha256 is the pin, and `weights pull` prints the
    # commit it resolved so that it can be pinned here.
    revision: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    filter_fn: str | None = None  # "module:function" mapping an upstream state_dict to ours
    input_range: str = ""

    def hub_url(self) -> str:
        rev = self.revision or "main"
        kind = "spaces/" if self.repo_type == "space" else ""
        return f"https://huggingface.co/{kind}{self.repo_id}/blob/{rev}/{self.filename}"


_REGISTRY: dict[str, WeightSpec] = {}

# Files written by imnkit name their architecture in the metadata key "imnkit.arch", so a local
# path needs no registry entry.
ARCH_BY_TAG = {"imn": "imnkit.embedding:build_imn"}


def register_weights(spec: WeightSpec) -> WeightSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ValueError(f"weights '{spec.name}' are already registered")
    if spec.source not in ("package", "hub", "local"):
        raise ValueError(f"weights '{spec.name}': unknown source '{spec.source}'")
    if spec.source == "hub" and not spec.repo_id:
        raise ValueError(f"weights '{spec.name}': a Hub source needs a repo_id")
    _REGISTRY[spec.name] = spec
    return spec


def list_weights() -> list[WeightSpec]:
    from . import catalog  # noqa: F401  (registers the built-in entries)

    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_spec(name_or_path: str) -> WeightSpec:
    """A registered spec, or a ``local`` spec for a path to a safetensors file."""
    list_weights()
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path]
    if name_or_path.endswith((".safetensors", ".pth", ".pt")) or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        return WeightSpec(
            name=str(path),
            arch="",
            source="local",
            filename=str(path),
            license="as given by the file's owner",
            origin_url="",
            description="local file",
        )
    known = ", ".join(sorted(_REGISTRY))
    raise UsageError(f"unknown weights '{name_or_path}'", hint=f"known: {known}; or give a path to a .safetensors file")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_DIGESTS: dict[str, str] = {}


def weights_digest(name: str) -> str | None:
    """sha256 of the weights file ``name`` resolves to (cached per process), or None if absent."""
    if name in _DIGESTS:
        return _DIGESTS[name]
    try:
        path = resolve_path(name, download=False)
    except (WeightsError, UsageError):
        return None
    digest = sha256_file(path)
    _DIGESTS[name] = digest
    return digest


def shipped_with_digest(digest: str) -> str | None:
    """The name of the shipped (package) weights pinned to ``digest``, or None.

    An aux names its weights and their sha256: when the name has since moved to newer weights
    (``imn.default``), the earlier file is still shipped under its own name and found by digest.
    """
    return next((s.name for s in list_weights() if s.source == "package" and s.sha256 == digest), None)


def resolve_path(name: str, *, download: bool = True) -> Path:
    """The local file of weights ``name``: shipped, cached/downloaded from the Hub, or a local path.

    Raises WeightsError when the file is absent (naming where to get it) or fails its sha256.
    """
    spec = get_spec(name)
    if spec.source == "package":
        path = PACKAGE_DIR / spec.filename
        if not path.is_file():
            raise WeightsError(
                f"weights '{name}': the shipped file {spec.filename} is missing from the installed package",
                hint="reinstall imnkit",
            )
        return path
    if spec.source == "local":
        path = Path(spec.filename)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return path
    from .hub import fetch_hub_file

    path = fetch_hub_file(spec, download=download)
    _verify_sha(spec, path)
    return path


def _verify_sha(spec: WeightSpec, path: Path) -> None:
    if not spec.sha256:
        return
    digest = _DIGESTS.get(spec.name) or sha256_file(path)
    if digest != spec.sha256:
        raise WeightsError(
            f"weights '{spec.name}': {path.name} from {spec.repo_id} fails its sha256 check "
            f"(expected {spec.sha256[:12]}…, got {digest[:12]}…)",
            hint="delete the cached file and pull it again: imnkit weights pull " + spec.name,
        )
    _DIGESTS[spec.name] = digest


@functools.lru_cache(maxsize=None)
def read_pinned(name: str) -> bytes:
    """The bytes of the shipped weights file ``name`` (OpenCV's models), read once per process after
    its sha256 matched the catalog's pin; WeightsError otherwise (a file without a pin too)."""
    spec = get_spec(name)
    path = resolve_path(name, download=False)
    digest = sha256_file(path)
    if not spec.sha256 or digest != spec.sha256:
        raise WeightsError(
            f"the shipped model {path.name} fails its sha256 check "
            f"(expected {(spec.sha256 or 'a pin')[:12]}…, got {digest[:12]}…)",
            hint="reinstall imnkit",
        )
    return path.read_bytes()


def verify(name: str) -> dict[str, Any]:
    """Check that the file is present and matches its pinned sha256 (no download)."""
    spec = get_spec(name)
    path = resolve_path(name, download=False)
    digest = sha256_file(path)
    ok = spec.sha256 is None or digest == spec.sha256
    return {"name": name, "path": str(path), "sha256": digest, "pinned": spec.sha256, "ok": ok}


def load_state_dict(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and metadata of a weights file: safetensors first, ``.pth`` only with weights_only."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                return {k: fh.get_tensor(k) for k in fh.keys()}, meta
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({type(err).__name__})") from None
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        raise WeightsError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(err).__name__})",
            hint="imnkit never unpickles whole modules; convert the checkpoint to a plain state_dict",
        ) from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    return obj, {}


def load_strict(model, state_dict: Mapping[str, Any], *, what: str | None = None) -> None:
    """``model.load_state_dict(state_dict, strict=True)``, checked first; imnkit's one strict loader.

    Nothing is copied unless every key matches: otherwise :class:`~imnkit.errors.WeightsError` lists
    the sorted missing, unexpected and shape-mismatched keys (ten of each at most).

    Args:
        model: the ``nn.Module`` to fill.
        state_dict: native keys (run a checkpoint filter first for upstream files).
        what: how the error names the weights (a registry name or a path); default: the model's class.
    """
    what = what or type(model).__name__
    state_dict = dict(state_dict)
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if keys:
                shown = ", ".join(keys[:10]) + (f", ... (+{len(keys) - 10})" if len(keys) > 10 else "")
                parts.append(f"{label} {len(keys)}: [{shown}]")
        raise WeightsError(
            f"{what}: the checkpoint does not match the architecture ({'; '.join(parts)})",
            hint="check that the weights are for this model and variant",
        )
    model.load_state_dict(state_dict, strict=True)


def _import(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build(name: str, device: Any = "cpu", *, like: str | None = None):
    """Build the model of weights ``name``, load it strictly, put it in eval mode on ``device``.

    ``like``: for a local file given as ``name``, the registry entry whose architecture and checkpoint
    filter it uses (e.g. a hand-downloaded ``GPEN-BFR-512.pth`` is ``like="gpen.bfr_512"``).
    Returns ``(model, metadata)``.
    """
    spec = get_spec(name)
    if spec.source == "local" and not spec.arch and like:
        base = get_spec(like)
        from dataclasses import replace

        spec = replace(spec, arch=base.arch, filter_fn=base.filter_fn)
        _REGISTRY.setdefault(spec.name, spec)
    path = resolve_path(name)
    state, meta = load_state_dict(path)
    arch = spec.arch or ARCH_BY_TAG.get(meta.get("imnkit.arch", ""), "")
    if not arch:
        raise WeightsError(f"{path}: the file does not say which architecture it holds (metadata imnkit.arch)")
    factory = _import(arch)
    model = factory(meta) if getattr(factory, "takes_metadata", False) else factory()
    if spec.filter_fn:
        state = _import(spec.filter_fn)(state, model)
    load_strict(model, state, what=f"weights '{name}'")
    return model.to(device).eval(), meta
