"""The real test photos of ../shared/data/faces, shared by the face tests (never copied into the repo)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest


def faces_dir() -> Path:
    root = Path(os.environ.get("IMNKIT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    d = root / "data" / "faces"
    if not d.is_dir():
        pytest.skip(f"real test photos not found at {d} (set IMNKIT_SHARED to the shared/ folder)")
    return d


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """HxWx3 uint8 RGB (read-only, cached), EXIF orientation applied, transparency flattened onto white."""
    from imnkit.imageio import load_image

    arr = load_image(faces_dir() / name, background=(255, 255, 255))
    arr.flags.writeable = False
    return arr
