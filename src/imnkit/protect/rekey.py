"""Re-wrap a masked photo's keys for new recipients, without changing one pixel.

Format 3 auxes keep the key wrapping outside the sealed header (:mod:`imnkit.protect.keyed`), so
rotating recipients rewrites only the header's ``key`` entry: the content key is opened with an old
identity and sealed again to the new recipients. The masked pixels, the payloads and everything they
are authenticated with stay byte for byte; a recipient left out can no longer open the new file
(a copy of the old file still opens with its old identity: delete those copies too).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..bundle import META_VALUES, serialize
from ..errors import UsageError
from . import crypto
from .container import aux_of, with_aux
from .keyed import check_aux_bytes, header_digest, is_keyed, open_aux, read_header
from .keys import KeySource, unlock_key
from .recipients import Recipient, seal_to


def rekey_aux(raw: bytes, where: str, source: KeySource, recipients: list[Recipient]) -> tuple[bytes, str]:
    """The aux ``raw`` with its content key sealed to ``recipients`` instead: (new bytes, opener's fingerprint).

    ``source`` holds the old identities. AuthenticationError when none opens it (or it was changed).
    """
    aux = open_aux(raw, where)
    if not is_keyed(aux):
        raise crypto.AuthenticationError()
    check_aux_bytes(raw, aux)
    header = read_header(aux)
    if header["format"] < 3:
        raise UsageError(f"{where}: written before keys could be re-wrapped (aux format {header['format']})",
                         hint="take the Mask off and mask the photo again")
    if header["key"].get("wrap") != "recipients":
        raise crypto.AuthenticationError()  # rekey opens with an identity: an aux locked otherwise is refused
    context = header_digest(header)
    key = unlock_key(header["key"], aux.tensors, source, context=context)
    header = {**header, "key": {"wrap": "recipients", "recipients": seal_to(key, recipients, context)}}
    strings = _strings(raw)
    strings[META_VALUES] = json.dumps({**aux.meta, "aux.header": header}, sort_keys=True, allow_nan=False)
    return serialize(aux.tensors, strings), source.opened_by or ""


def rekey_png(png: bytes, where: str, source: KeySource, recipients: list[Recipient]) -> tuple[bytes, str]:
    """A masked PNG with its inside aux re-wrapped; the image data chunks are kept byte for byte."""
    raw = aux_of(png)
    if raw is None:
        raise UsageError(f"{where} holds no aux", hint="re-key its sidecar aux file instead")
    new, who = rekey_aux(raw, where, source, recipients)
    return with_aux(png, new), who


def _strings(raw: bytes) -> dict[str, str]:
    import struct

    (n,) = struct.unpack("<Q", raw[:8])
    return dict(json.loads(raw[8 : 8 + n].decode("utf-8"))["__metadata__"])


def rekey_file(path: Path, source: KeySource, recipients: list[Recipient]) -> tuple[bytes, str]:
    """The new bytes of a masked PNG (aux inside), a masked clip (aux attached) or an aux file at ``path``:
    (bytes, opener's fingerprint). Clips and their auxes: :mod:`imnkit.video.rekey`."""
    from ..media import is_video_path
    from ..video import is_video_aux_file

    if is_video_path(path) or is_video_aux_file(path):
        from ..video.rekey import rekey_aux_bytes, rekey_clip

        if is_video_path(path):
            return rekey_clip(path, source, recipients)
        return rekey_aux_bytes(path.read_bytes(), str(path), source, recipients)
    data = path.read_bytes()
    if data.startswith(b"\x89PNG"):
        return rekey_png(data, str(path), source, recipients)
    return rekey_aux(data, str(path), source, recipients)
