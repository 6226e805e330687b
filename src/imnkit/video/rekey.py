"""``imnkit rekey`` on clips: a clip's aux (a sidecar file, or attached to the masked .mkv) sealed to new recipients.

The clip's content key is opened with an old identity and sealed again to the new recipients; the
manifest is sealed again over the new clip header (:func:`imnkit.video.aux.rekey`). Every frame record,
payload and masked frame stays as it was. For a masked clip the new aux replaces the attachment in a
copy made packet for packet (:func:`imnkit.video.attachment.attach`: the frames and their timestamps are
checked unchanged), returned as bytes for the caller to write atomically over the clip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from imnkit.errors import UsageError
from imnkit.protect import crypto
from imnkit.protect.keyed import open_aux
from imnkit.protect.keys import KeySource
from imnkit.video.attachment import attach, attached_aux
from imnkit.video.aux import is_video_aux, rekey


def rekey_aux_bytes(raw: bytes, where: str, source: KeySource, recipients: list) -> tuple[bytes, str]:
    """A clip aux's bytes sealed to ``recipients``: (new bytes, the fingerprint of the identity that opened it)."""
    aux = open_aux(raw, where)
    if not is_video_aux(aux):
        raise crypto.AuthenticationError()
    return rekey(aux, source, recipients).to_bytes(), source.opened_by or ""


def rekey_clip(path: Path, source: KeySource, recipients: list) -> tuple[bytes, str]:
    """The bytes of masked clip ``path`` with its attached aux sealed to ``recipients``; (bytes, opener)."""
    from imnkit.video.io import video_timestamps

    raw = attached_aux(path)
    if raw is None:
        raise UsageError(f"{path} carries no aux", hint="re-key its sidecar aux file instead")
    new, who = rekey_aux_bytes(raw, f"{path} (its aux)", source, recipients)
    with tempfile.TemporaryDirectory(prefix="imnkit-rekey-") as folder:  # 0700; the masked clip holds no secret
        out = Path(folder) / "clip.mkv"
        attach(path, out, new, video_timestamps(path)[0])
        return out.read_bytes(), who
