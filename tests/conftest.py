"""Shared fixtures. Real photos come from ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    env = os.environ.get("IMNKIT_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture
def one_thread():
    """Torch on one thread: two OpenMP threads on a shared 2-core box are far slower than one when the
    other core is busy (network and training tests use it)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"the shared data folder {path} is absent (set IMNKIT_SHARED)")
    return path


@pytest.fixture(scope="session")
def faces_dir(shared: Path) -> Path:
    path = shared / "data" / "faces"
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the real-photo tests need ../shared/data/faces")
    return path


@pytest.fixture(scope="session")
def reference_dir(shared: Path) -> Path:
    path = shared / "reference" / "checkpoints"
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the fixture tests need ../shared/reference/checkpoints")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def photo(rng) -> np.ndarray:
    """A smooth synthetic 96x128 RGB image (not a face): gradients plus noise."""
    y, x = np.mgrid[0:96, 0:128]
    base = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
