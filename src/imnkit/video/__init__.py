"""Video: mask every face of a clip frame by frame, keep the sound, and take the Mask off frame-exactly.

Modules (PyAV, the optional extra ``imnkit[video]``, is imported only inside them):

- :mod:`imnkit.video.io`: probe, decode and encode (FFV1/bgr0 in Matroska, lossless in RGB), sound copied.
- :mod:`imnkit.video.track`: faces tracked across frames (detection every few frames, landmarks between).
- :mod:`imnkit.video.aux`: the one aux file of a clip (one content key, per-frame regions and payloads).
- :mod:`imnkit.video.mask`: ``imnkit run`` on a clip.
- :mod:`imnkit.video.unmask`: ``imnkit extract`` on a masked clip.

This module itself imports nothing heavy: the CLI asks it whether a path is a video.
"""

from __future__ import annotations

import os

from imnkit.errors import UsageError

from imnkit.media import VIDEO_SUFFIXES, is_video_path  # noqa: F401  (re-exported: where callers look)

EXTRA_HINT = "pip install 'imnkit[video]'"


def is_video_aux_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is the aux of a masked clip (read from its header only: no tensor loaded)."""
    import json

    from imnkit.bundle import META_VALUES, read_header
    from imnkit.errors import ImnkitError

    try:
        _, strings = read_header(path)
        return json.loads(strings.get(META_VALUES, "{}")).get("aux.kind") == "video"
    except (ImnkitError, ValueError, AttributeError, OSError):
        return False  # not a bundle, or not a video aux: the photo path reads it and says what is wrong


def require_av():
    """The ``av`` module (PyAV), or a UsageError (exit 2) naming the optional extra that installs it."""
    try:
        import av
    except ImportError:
        raise UsageError("video needs PyAV, the optional extra imnkit[video]", hint=EXTRA_HINT) from None
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own log lines would interleave with ours; errors are raised
    return av
