"""Bundles: the safetensors files that stages read and write.

A bundle is named tensors plus string metadata. The metadata holds, as JSON strings:

- ``imnkit.format``: the bundle format version (an integer; readers refuse newer versions),
- ``imnkit.version``: the imnkit version that wrote it,
- ``imnkit.meta``: a JSON object of small values (source file name, region boxes, seeds ...),
- ``imnkit.history``: the list of stages that made it, each with its resolved parameters,
  weights digests, device, seconds and imnkit version.

Images are stored as ``uint8`` tensors of shape (H, W, 3), RGB: exact and compact. Key names are
namespaced by what they hold (``image.protected``, ``faces.landmarks``, ``mask.image`` ...). Nothing in
a bundle is pickled.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import BundleError, OutputError
from .imageio import check_output_path
from .safefile import PRIVATE, write_file

if TYPE_CHECKING:  # torch is imported where tensors are made: reading a keyed aux needs no torch
    import torch

FORMAT_VERSION = 1
META_FORMAT = "imnkit.format"
META_VERSION = "imnkit.version"
META_VALUES = "imnkit.meta"
META_HISTORY = "imnkit.history"

# A header larger than this is not one we wrote (safetensors itself caps headers at 100 MB).
_MAX_HEADER = 100_000_000


@dataclass
class Bundle:
    """Tensors plus JSON-able metadata and the history of the stages that made them.

    Stages hold torch tensors; a bundle read with ``framework="numpy"`` holds numpy arrays (what the
    keyed recovery reads, without importing torch).
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None  # where it was read from, for error messages

    def __contains__(self, key: str) -> bool:
        return key in self.tensors or key in self.meta

    def require(self, key: str, *, stage: str | None = None) -> torch.Tensor:
        """The tensor ``key``, or a BundleError naming what the bundle has instead."""
        if key not in self.tensors:
            who = f"stage '{stage}' needs" if stage else "needs"
            where = f" in {self.source}" if self.source else ""
            have = ", ".join(sorted(self.tensors)) or "no tensors"
            raise BundleError(
                f"{who} key '{key}', which is missing{where} (it has: {have})",
                hint="run the stage that provides it first, or use a recipe that does",
            )
        return self.tensors[key]

    def add(self, key: str, value: torch.Tensor | np.ndarray) -> None:
        """Store a torch tensor (detached, on the CPU) or a numpy array (C-contiguous) under ``key``."""
        if isinstance(value, np.ndarray):
            self.tensors[key] = np.ascontiguousarray(value)
        else:
            self.tensors[key] = value.detach().to("cpu").contiguous()

    def subset(self, prefix: str) -> Bundle:
        """A new bundle with only the tensors and meta values whose keys start with ``prefix``."""
        return Bundle(
            tensors={k: v for k, v in self.tensors.items() if k.startswith(prefix)},
            meta={k: v for k, v in self.meta.items() if k.startswith(prefix)},
            history=list(self.history),
        )

    def metadata_strings(self) -> dict[str, str]:
        return {
            META_FORMAT: str(FORMAT_VERSION),
            META_VERSION: __version__,
            META_VALUES: json.dumps(self.meta, sort_keys=True, allow_nan=False),
            META_HISTORY: json.dumps(self.history, allow_nan=False),
        }

    def to_bytes(self) -> bytes:
        return serialize(self.tensors, self.metadata_strings())

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str | None = None, framework: str = "torch") -> Bundle:
        """The inverse of ``to_bytes``: a bundle from safetensors bytes (e.g. passed between processes).

        ``framework``: ``torch`` (tensors) or ``numpy`` (arrays; torch is not imported).
        Raises BundleError for bytes that are not a safetensors bundle, are truncated, or come from a
        newer format; ``source`` names them in the message.
        """
        from safetensors import SafetensorError

        if framework == "numpy":
            from safetensors.numpy import load as load_tensors
        else:
            from safetensors.torch import load as load_tensors

        where = source or "<bytes>"
        not_st = BundleError(f"{where}: not a safetensors bundle")
        if len(data) < 8:
            raise not_st
        (n,) = struct.unpack("<Q", data[:8])
        if n < 2 or n > _MAX_HEADER or 8 + n > len(data):
            raise not_st
        try:
            header = json.loads(data[8 : 8 + n].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise not_st from None
        if not isinstance(header, dict):
            raise not_st
        metadata = header.get("__metadata__") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise not_st  # safetensors metadata is a str -> str map
        _check_format(metadata.get(META_FORMAT), where)
        try:
            tensors = load_tensors(bytes(data))
            meta = json.loads(metadata.get(META_VALUES, "{}"))
            history = json.loads(metadata.get(META_HISTORY, "[]"))
        except SafetensorError:
            raise BundleError(f"{where}: the bundle is corrupt (tensor data unreadable)") from None
        except json.JSONDecodeError:
            raise BundleError(f"{where}: the bundle metadata is corrupt") from None
        return cls(tensors=dict(tensors), meta=meta, history=history, source=source)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, inputs: tuple = ()) -> Path:
        """Write the bundle atomically, mode 0600 (it may hold the original photo or a key): see
        :mod:`imnkit.safefile`."""
        data = self.to_bytes()
        check_output_path(Path(path), overwrite=overwrite, inputs=inputs)
        try:
            return write_file(path, data, mode=PRIVATE)
        except OSError as err:
            raise OutputError(f"{path}: the write failed ({err.strerror or err}); nothing was written") from None


_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
           "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def _raw(name: str, t) -> tuple[str, list[int], bytes]:
    """(safetensors dtype, shape, little-endian bytes) of a torch tensor or numpy array."""
    if isinstance(t, np.ndarray):
        a = np.ascontiguousarray(t)
        dtype, shape = a.dtype.name, list(a.shape)
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    else:
        import torch

        t = t.detach().to("cpu").contiguous()
        dtype, shape = str(t.dtype).removeprefix("torch."), list(t.shape)
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    if dtype not in _DTYPES:
        raise BundleError(f"tensor '{name}' has dtype {dtype}, which bundles do not store")
    return _DTYPES[dtype], shape, data


def serialize(tensors: dict[str, Any], metadata: dict[str, str]) -> bytes:
    """The safetensors encoding with keys in sorted order, so equal bundles are equal bytes.

    ``tensors``: torch tensors or numpy arrays (the same bytes either way).
    (safetensors' own writer orders the metadata by a hash map, which differs between runs.)
    """
    entries: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        dtype, shape, data = _raw(name, tensors[name])
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)  # align the data to 8 bytes, as safetensors does
    return struct.pack("<Q", len(header)) + header + b"".join(blobs)


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """Read and check a safetensors header without loading tensors.

    Returns ``(tensor_entries, metadata)``. Raises BundleError for a missing, non-safetensors or
    truncated file, and for a bundle written by a newer format.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such file")
    if path.is_dir():
        raise BundleError(f"{path}: is a folder, not a bundle")
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) == 8 and 2 <= struct.unpack("<Q", head)[0] <= _MAX_HEADER:
            head += fh.read(struct.unpack("<Q", head)[0])
    return parse_header(head, path.stat().st_size, path)


def parse_header(head: bytes, size: int, where) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`read_header` of a bundle whose first bytes are ``head`` (at least its header) and whose
    length is ``size``: a bundle held in memory (an aux inside a masked PNG or clip) reads the same."""
    not_st = BundleError(f"{where}: not a safetensors bundle", hint="bundles are written by imnkit stages (.safetensors)")
    if size < 8 or len(head) < 8:
        raise not_st
    (n,) = struct.unpack("<Q", head[:8])
    if n < 2 or n > _MAX_HEADER:
        raise not_st
    if 8 + n > size or 8 + n > len(head):
        raise BundleError(f"{where}: the bundle is truncated (header cut off)")
    try:
        header = json.loads(head[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise not_st from None
    if not isinstance(header, dict):
        raise not_st
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise not_st
    end = 0
    for name, entry in header.items():
        if not isinstance(entry, dict) or "data_offsets" not in entry:
            raise not_st
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (IndexError, KeyError, TypeError, ValueError):
            raise not_st from None
    if 8 + n + end > size:
        raise BundleError(f"{where}: the bundle is truncated ({size} bytes, needs {8 + n + end})")
    _check_format(metadata.get(META_FORMAT), where)
    return header, metadata


def _check_format(fmt: str | None, where) -> None:
    """Refuse a bundle whose format version is unreadable or newer than this imnkit reads."""
    if fmt is None:
        return
    try:
        fmt_int = int(fmt)
    except ValueError:
        raise BundleError(f"{where}: unreadable bundle format version") from None
    if fmt_int > FORMAT_VERSION:
        raise BundleError(
            f"{where}: bundle format {fmt_int} is newer than this imnkit reads ({FORMAT_VERSION})",
            hint="upgrade imnkit",
        )


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Load a bundle (or any safetensors file) with its metadata and history."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _, metadata = read_header(path)
    try:
        tensors = load_file(str(path))
    except SafetensorError:
        raise BundleError(f"{path}: the bundle is corrupt (tensor data unreadable)") from None
    try:
        meta = json.loads(metadata.get(META_VALUES, "{}"))
        history = json.loads(metadata.get(META_HISTORY, "[]"))
    except json.JSONDecodeError:
        raise BundleError(f"{path}: the bundle metadata is corrupt") from None
    if not isinstance(meta, dict) or not isinstance(history, list):
        raise BundleError(f"{path}: the bundle metadata is corrupt")
    return Bundle(tensors=dict(tensors), meta=meta, history=history, source=str(path))


def describe(path: str | os.PathLike, data: bytes | None = None) -> dict[str, Any]:
    """What ``imnkit inspect`` shows: keys with shape and dtype, metadata values and history.

    ``data``: the bundle's bytes when it is held in memory (``path`` then only names it).
    """
    header, metadata = read_header(path) if data is None else parse_header(data, len(data), path)
    keys = {
        name: {"dtype": entry["dtype"], "shape": list(entry["shape"])} for name, entry in sorted(header.items())
    }
    out: dict[str, Any] = {
        "path": str(path),
        "format": metadata.get(META_FORMAT),
        "imnkit_version": metadata.get(META_VERSION),
        "tensors": keys,
    }
    for name, field_name in ((META_VALUES, "meta"), (META_HISTORY, "history")):
        try:
            out[field_name] = json.loads(metadata[name]) if name in metadata else ({} if field_name == "meta" else [])
        except json.JSONDecodeError:
            out[field_name] = "<unreadable>"
    other = {k: v for k, v in metadata.items() if k not in (META_FORMAT, META_VERSION, META_VALUES, META_HISTORY)}
    if other:
        out["other_metadata"] = other
    return out


def tensor_to_image(t: torch.Tensor | np.ndarray, key: str = "image") -> np.ndarray:
    """Stored image (torch tensor or numpy array) -> (H, W, 3) uint8 numpy array, checking the layout."""
    a = t if isinstance(t, np.ndarray) else t.detach().cpu().numpy()
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise BundleError(f"'{key}' is not an image: expected (H, W, 3) uint8, got {tuple(a.shape)} {a.dtype}")
    return a
