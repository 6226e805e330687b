"""The aux inside the masked PNG: one self-contained file for recipients.

With recipients the aux holds no secret (its keys are sealed to public keys), so it can travel in the
masked PNG itself, as one private ancillary chunk ``imAX`` placed just before ``IEND``. Every viewer
ignores it and shows the photo; the pixels are not touched. The chunk's letters say: ancillary
(``i``), private (``m``), reserved bit clear (``A``), and not safe to copy (``X``): an editor that
changes the pixels must drop it, as it no longer describes them. Re-encoding the photo (JPEG, a
resize, most uploads) drops the chunk: the faces then come back only with a sidecar aux (``--sidecar``),
and, for ``sealed``, only from the PNG exactly as written.

The chunk's CRC (zlib's CRC-32) only detects accidental damage; the aux's contents are authenticated
by its own ciphers like a sidecar aux.
"""

from __future__ import annotations

import struct
import zlib

from ..errors import InputError

CHUNK = b"imAX"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_CHUNK = 2**31 - 1


def _chunks(png: bytes):
    """(offset, type, data) of every chunk; InputError when the bytes are not a well-formed PNG."""
    if not png.startswith(_SIGNATURE):
        raise InputError("not a PNG file")
    pos = len(_SIGNATURE)
    while pos < len(png):
        if pos + 12 > len(png):
            raise InputError("the PNG file is truncated")
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        end = pos + 12 + length
        if end > len(png):
            raise InputError("the PNG file is truncated")
        data = png[pos + 8 : pos + 8 + length]
        if struct.unpack(">I", png[end - 4 : end])[0] != zlib.crc32(kind + data):
            raise InputError(f"the PNG file is damaged (bad CRC in a {kind.decode('latin-1')!r} chunk)")
        yield pos, kind, data
        pos = end
        if kind == b"IEND":
            return
    raise InputError("the PNG file has no IEND chunk")


def with_aux(png: bytes, aux: bytes) -> bytes:
    """``png`` with ``aux`` in an ``imAX`` chunk before ``IEND`` (any earlier ``imAX`` chunk replaced)."""
    if len(aux) > _MAX_CHUNK:
        raise InputError("the aux is too large for a PNG chunk")
    kept, iend = [], None
    for pos, kind, data in _chunks(png):
        if kind == b"IEND":
            iend = pos
        elif kind != CHUNK:
            kept.append(png[pos : pos + 12 + len(data)])
    chunk = struct.pack(">I4s", len(aux), CHUNK) + aux + struct.pack(">I", zlib.crc32(CHUNK + aux))
    return _SIGNATURE + b"".join(kept) + chunk + png[iend:]


def aux_of(png: bytes) -> bytes | None:
    """The aux bytes in ``png``'s ``imAX`` chunk, or None when it has none."""
    found = [data for _, kind, data in _chunks(png) if kind == CHUNK]
    if len(found) > 1:
        raise InputError("the PNG file holds more than one imnkit aux chunk")
    return found[0] if found else None


def has_aux(png: bytes) -> bool:
    try:
        return aux_of(png) is not None
    except InputError:
        return False
