"""What kind of input a path is, by its name alone: a photo or a clip.

A neutral module both the recipe runner and the video package import, so neither imports the other
(:mod:`imnkit.jobs` dispatches an input to one of them).
"""

from __future__ import annotations

import os
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def is_video_path(path: str | os.PathLike) -> bool:
    """True when the file's suffix is one of :data:`VIDEO_SUFFIXES` (case-insensitive).

    ``path``: a path, or anything whose ``str`` ends with the file name (the Ray engine's URLs).
    """
    return Path(str(path)).suffix.lower() in VIDEO_SUFFIXES
