"""The pool builder's fold check (scripts/build_identities.py): a composite whose warp turns the
texture over between the brows, nose and eyes is not built (the first pool's woman_young_5 had a
pale triangle on its nose from such a fold)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from imnkit.face.identities import load_pool

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_identities.py"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_identities", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_identities"] = mod
    spec.loader.exec_module(mod)
    return mod


def _template() -> np.ndarray:
    """A face on the builder's canvas: the mean of the shipped pool's landmarks."""
    return np.mean([np.asarray(i.landmarks, np.float64) for i in load_pool()], axis=0)


def test_a_moved_or_scaled_face_does_not_fold(builder):
    t = _template()
    c = t.mean(axis=0)
    assert builder.folds(t, t) == 0
    assert builder.folds(t, c + 1.1 * (t - c) + [3.0, -2.0]) == 0


def test_a_nose_pushed_past_an_eye_corner_folds(builder):
    t = _template()
    shape = t.copy()
    # The nose bridge and tip carried past the image-left eye's inner corner (landmark 39).
    shape[27:31, 0] += 1.5 * (t[39, 0] - t[27:31, 0]).min() - 0.5 * (t[42, 0] - t[39, 0])
    assert builder.folds(t, shape) > 0
    # Folds between the closed lips or at the jaw are not counted (the swap's mask and lips hide them).
    lips = t.copy()
    lips[[62, 66]] = lips[[66, 62]]
    assert builder.folds(t, lips) == 0
