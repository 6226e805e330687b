"""Loading upstream ``.pth`` checkpoints into imnkit's reference nets, strictly.

One ``checkpoint_filter_fn`` per upstream family (SimSwap generator, SimSwap ArcFace, GPEN)
turns whatever the public file holds into the module's native state_dict: it unwraps the
wrapper dicts that family is known to use and strips the ``module.`` (DataParallel) and
``_orig_mod.`` (torch.compile) prefixes, explicitly, and renames nothing else. The caller
then loads with :func:`imnkit.weights.load_strict` (also offered here as ``load_state_dict_strict``),
which raises :class:`~imnkit.errors.WeightsError` listing the sorted missing / unexpected /
mis-shaped keys instead of loading partially.

:func:`load_pth_state_dict` reads a ``.pth`` with ``torch.load(..., weights_only=True)``
only; a file that needs full unpickling (e.g. SimSwap's ``arcface_checkpoint.tar``, a
pickled whole module) is refused with a clear error, never retried unsafely.

:func:`read_manifest` and :func:`regenerate_fixture_weights` implement the reference
fixtures' weight regeneration rule (``shared/reference/checkpoints/README.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from imnkit.errors import WeightsError
from imnkit.weights import load_strict

__all__ = [
    "ManifestEntry",
    "arcface_checkpoint_filter_fn",
    "gpen_checkpoint_filter_fn",
    "load_pth_state_dict",
    "load_state_dict_strict",
    "read_manifest",
    "regenerate_fixture_weights",
    "simswap_checkpoint_filter_fn",
    "strip_prefixes",
]

_PREFIXES = ("module.", "_orig_mod.")


# --------------------------------------------------------------------------------------
# reading and unwrapping
# --------------------------------------------------------------------------------------


def load_pth_state_dict(path: str | Path) -> dict:
    """Read a ``.pth``/``.pt``/``.tar`` checkpoint with ``torch.load(weights_only=True)``.

    Returns whatever mapping the file holds (possibly a wrapper dict: pass it through the
    family's filter fn). Raises :class:`WeightsError` for a missing file, a file that is not a
    weights-only pickle (a pickled module, custom classes), or a file that holds no dict.
    There is deliberately no fallback to ``weights_only=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised as a clear, typed error
        raise WeightsError(
            f"cannot load {path.name} with torch.load(weights_only=True): {type(err).__name__}",
            hint="only plain state_dict checkpoints are accepted; convert a pickled module "
            "to a state_dict (or safetensors) in a trusted environment first",
        ) from err
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path.name} holds a {type(obj).__name__}, not a state_dict mapping")
    return dict(obj)


def _is_flat_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def _unwrap(checkpoint: Mapping, wrapper_keys: tuple[str, ...], family: str) -> dict:
    """Descend through known wrapper keys until a flat ``{name: tensor}`` dict is reached."""
    obj: object = checkpoint
    for _ in range(4):  # wrappers are at most a couple of levels deep
        if _is_flat_tensor_dict(obj):
            return dict(obj)  # type: ignore[arg-type]
        if not isinstance(obj, Mapping):
            break
        for key in wrapper_keys:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        else:
            # no known wrapper key and not a pure tensor dict: refuse rather than guess
            # (silently dropping non-tensor entries could hide a wrong file)
            raise WeightsError(
                f"unrecognised {family} checkpoint layout: top-level keys "
                f"{sorted(map(str, obj.keys()))[:8]}",
                hint=f"expected a plain state_dict or one wrapped under {list(wrapper_keys)}",
            )
    raise WeightsError(f"unrecognised {family} checkpoint layout (no tensor dict found)")


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = _PREFIXES) -> dict:
    """Strip ``module.`` / ``_orig_mod.`` prefixes (repeatedly, any order) from every key."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if key.startswith(p):
                    key = key[len(p):]
                    changed = True
        if key in out:
            raise WeightsError(f"duplicate key after stripping prefixes: {key}")
        out[key] = value
    return out


def _make_filter(family: str, wrapper_keys: tuple[str, ...]) -> Callable[..., dict]:
    def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module | None = None) -> dict:
        sd = _unwrap(state_dict, wrapper_keys, family)
        sd = strip_prefixes(sd)
        return sd

    checkpoint_filter_fn.__name__ = f"{family}_checkpoint_filter_fn"
    checkpoint_filter_fn.__doc__ = (
        f"Unwrap a {family} checkpoint ({', '.join(repr(k) for k in wrapper_keys)} wrappers), "
        "strip ``module.``/``_orig_mod.`` prefixes; keys are otherwise native. "
        "``model`` is accepted for timm-style signature compatibility and not used."
    )
    return checkpoint_filter_fn


#: SimSwap generator: ``*_net_G.pth`` is a plain state_dict (``module.`` when saved from DataParallel).
simswap_checkpoint_filter_fn = _make_filter("simswap", ("state_dict", "model", "netG", "G"))
#: SimSwap ArcFace (``simswap_arcface.pth``): plain state_dict, possibly under ``model``/``state_dict``.
arcface_checkpoint_filter_fn = _make_filter("arcface", ("state_dict", "model"))
#: GPEN: release files are plain state_dicts; training checkpoints hold ``{'g', 'd', 'g_ema', ...}``.
gpen_checkpoint_filter_fn = _make_filter("gpen", ("g_ema", "state_dict", "model", "params_ema", "params"))


#: The strict loader, :func:`imnkit.weights.load_strict`, under the name this module has always offered.
load_state_dict_strict = load_strict


# --------------------------------------------------------------------------------------
# reference fixtures: manifest + weight regeneration rule
# --------------------------------------------------------------------------------------

ManifestEntry = tuple[str, tuple[int, ...], torch.dtype]

_DTYPES = {"float32": torch.float32, "int64": torch.int64, "float16": torch.float16, "float64": torch.float64}


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Parse a ``key<TAB>shape<TAB>dtype`` manifest (shape ``AxBxC`` or ``scalar``), in file order."""
    entries: list[ManifestEntry] = []
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0].split("\t") != ["key", "shape", "dtype"]:
        raise ValueError(f"{path}: not a key/shape/dtype manifest")
    for line in lines[1:]:
        if not line.strip():
            continue
        key, shape_s, dtype_s = line.split("\t")
        shape = () if shape_s == "scalar" else tuple(int(d) for d in shape_s.split("x"))
        entries.append((key, shape, _DTYPES[dtype_s]))
    return entries


def regenerate_fixture_weights(
    manifest_tsv: str | Path, model: nn.Module, seed: int, equalized: bool
) -> dict[str, torch.Tensor]:
    """Regenerate a fixture's weights by the rule of ``shared/reference/checkpoints/README.md``.

    One ``torch.Generator().manual_seed(seed)`` on the CPU, walking the manifest in order:

    - int64 tensors: zeros, no draw;
    - keys ending ``.kernel``: the model's own buffer value, no draw;
    - ``running_var``: ``0.5 + rand``; ``running_mean``: ``0.1 * randn``;
    - >= 2-d: ``randn * s`` with ``s = 1`` if ``equalized`` else ``1/sqrt(fan_in)``, fan_in the
      product of the dims after the first (after the first two for 5-d modulated weights);
    - other float tensors: ``0.1 * randn``, plus 1.0 when the last key component is ``weight``.
    """
    g = torch.Generator().manual_seed(int(seed))
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, shape, dtype in read_manifest(manifest_tsv):
        if dtype == torch.int64:
            t = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith(".kernel"):
            if key not in own:
                raise KeyError(f"model has no fixed buffer {key}")
            t = own[key].detach().clone().to(dtype)
        elif key.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g, dtype=dtype)
        elif key.endswith("running_mean"):
            t = 0.1 * torch.randn(shape, generator=g, dtype=dtype)
        elif len(shape) >= 2:
            if equalized:
                s = 1.0
            else:
                fan_dims = shape[2:] if len(shape) == 5 else shape[1:]
                s = 1.0 / math.sqrt(math.prod(fan_dims))
            t = torch.randn(shape, generator=g, dtype=dtype) * s
        else:
            t = 0.1 * torch.randn(shape, generator=g, dtype=dtype)
            if key.rsplit(".", 1)[-1] == "weight":
                t = t + 1.0
        out[key] = t
    return out
