"""The pool builder (scripts/build_identities.py): its fold check (a composite whose warp turns the
texture over between the brows, nose and eyes is not built; the first pool's woman_young_5 had a
pale triangle on its nose from such a fold) and its ``--descriptors-only`` update."""

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


def test_descriptors_only_rewrites_just_the_descriptors(builder, tmp_path):
    # A pool copied without descriptors gets them back, equal to the shipped ones; nothing else in
    # its manifest changes.
    import json
    import shutil

    from imnkit.face.identities import MANIFEST, default_dir

    dst = tmp_path / "pool"
    shutil.copytree(default_dir(), dst, ignore=shutil.ignore_patterns("__pycache__"))
    meta = json.loads((dst / MANIFEST).read_text())
    for entry in meta["identities"][2:]:
        del entry["descriptor"]
    meta["identities"] = meta["identities"][:4]  # four are enough (each costs a dlib descriptor)
    (dst / MANIFEST).write_text(json.dumps(meta))
    builder.add_descriptors(dst)
    again = json.loads((dst / MANIFEST).read_text())
    shipped = {i.name: i for i in load_pool()}
    for entry in again["identities"]:
        np.testing.assert_allclose(entry.pop("descriptor"), shipped[entry["name"]].descriptor, atol=1e-5)
    assert again["identities"] == [{k: v for k, v in e.items() if k != "descriptor"} for e in meta["identities"]]
    assert {i.name for i in load_pool(dst)} == {e["name"] for e in meta["identities"]}


def _candidate(look, colour, rng):
    """A scored candidate as the builder makes them: a flat face of one colour, far from all others."""
    rgb = np.empty((384, 384, 3), np.uint8)
    rgb[:] = colour
    return {"look": look, "members": [], "how": "", "rgb": rgb, "lm": _template(), "ex": 0.8, "near": 0.7,
            "desc": rng.normal(0.0, 0.2, 128)}


def test_extend_adds_a_darker_skinned_identity_to_every_look_first(builder):
    # --extend: every look lacking a darker-skinned identity (cheeks' ITA < 28) gets one before any
    # look is topped up to 3, and the identities already kept stay first and unchanged.
    rng = np.random.default_rng(0)
    dark, light = (95, 62, 45), (235, 205, 185)
    looks = builder.LOOKS
    old = [dict(_candidate(("m", "adult"), dark, rng), name="man_adult_1", tone=10.0, entry={})]
    scored = [_candidate(look, c, rng) for look in looks for c in (light, light, dark, light)]
    kept = builder.extend_pool(scored, old, count=len(looks) * 3 + 1)
    assert kept[0] is old[0]
    new = kept[1:]
    assert all(c["tone"] < builder.DARK_ITA for c in new[:len(looks) - 1])  # m/adult already had one
    for look in looks:
        mine = [k for k in kept if k["look"] == look]
        assert len(mine) >= 3, look
        assert any(k["tone"] < builder.DARK_ITA for k in mine), look
    assert {k["name"] for k in kept if k["look"] == ("f", "child")} == {"girl_1", "girl_2", "girl_3"}
    assert len({k["name"] for k in kept}) == len(kept)
