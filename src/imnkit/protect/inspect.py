"""What ``imnkit inspect`` shows of a bundle, an aux or a masked PNG with its aux inside.

Tensor names, dtypes and shapes, metadata values and the stage history, and for a keyed aux the
faces it hides (index, box, treatment) and who may open it (the way it is locked, recipients by
fingerprint). Never a tensor's values, and sealed keys only by their size.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..bundle import describe
from ..errors import InputError, UsageError
from ..media import is_video_path
from .container import aux_of


def describe_file(path: Path) -> dict[str, Any]:
    """``inspect``'s description of ``path`` (a .safetensors bundle, or a PNG with an ``imAX`` chunk)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        try:
            raw = aux_of(path.read_bytes())
        except OSError as err:
            raise InputError(f"{path}: cannot read it ({err.strerror or type(err).__name__})") from None
        if raw is None:
            raise UsageError(f"{path} holds no aux", hint="inspect its .aux.safetensors file")
        info = describe(path, data=raw)
        info["aux_inside"] = True
    elif is_video_path(path):  # a masked clip: its attached aux (recipients), described like a PNG's
        from ..video.attachment import attached_aux

        raw = attached_aux(path)
        if raw is None:
            raise UsageError(f"{path} carries no aux", hint="inspect its .aux.safetensors file")
        info = describe(path, data=raw)
        info["aux_inside"] = True
    else:
        info = describe(path)
    return _with_faces(info)


def _size(text: str) -> int:
    import base64
    import binascii

    try:
        return len(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        return 0


def _with_faces(info: dict[str, Any]) -> dict[str, Any]:
    meta = info.get("meta")
    header = meta.get("aux.header") if isinstance(meta, dict) else None
    clip = meta.get("aux.video") if isinstance(meta, dict) else None
    if isinstance(clip, dict):  # a clip's aux: its tracked people (``--face N``), and the key as for a photo
        if isinstance(clip.get("tracks"), list):
            info["tracks"] = [t for t in clip["tracks"] if isinstance(t, dict)]  # unauthenticated: shown as found
        header, name = clip, "aux.video"
    else:
        name = "aux.header"
    if not isinstance(header, dict):
        return info
    from .keyed import faces_of

    try:
        if name == "aux.header":
            info["faces"] = faces_of(header)
    except (TypeError, ValueError, IndexError):
        pass
    key = header.get("key")
    if isinstance(key, dict) and isinstance(key.get("recipients"), list):
        shown = copy.deepcopy(header)
        for entry in shown["key"]["recipients"]:
            if isinstance(entry, dict) and isinstance(entry.get("sealed"), str):
                entry["sealed"] = f"<sealed key, {_size(entry['sealed'])} bytes>"
        info["meta"] = {**meta, name: shown}
    return info
