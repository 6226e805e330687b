"""The pool's eye step (scripts/identity_eyes.py): a composite's averaged, painted-looking eyes are
replaced by one person's eye region, in the composite's own colour, and nothing else changes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from imnkit.face.identities import default_dir, load_pool

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def eyes():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("identity_eyes", SCRIPTS / "identity_eyes.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(SCRIPTS))
    return mod


def _template() -> np.ndarray:
    return np.mean([np.asarray(i.landmarks, np.float64) for i in load_pool()], axis=0)


def _liner(img: np.ndarray, lm: np.ndarray, colour) -> np.ndarray:
    """A thick line drawn along both upper lids (the painted look of an averaged composite)."""
    for eye in (lm[36:40], lm[42:46]):
        cv2.polylines(img, [np.round(eye).astype(np.int32)], False, colour, 4)
    return img


def test_the_donor_eyes_replace_the_painted_ones_in_the_composites_colour(eyes):
    lm = _template()
    skin = (225, 185, 160)
    composite = _liner(np.full((384, 384, 3), skin, np.uint8), lm, (20, 20, 20))
    donor = np.full((384, 384, 3), (180, 140, 115), np.uint8)  # a darker face (same skin group), no liner
    cv2.circle(donor, tuple(np.round(lm[36:42].mean(axis=0)).astype(int)), 6, (30, 20, 15), -1)  # an iris
    out = eyes.with_eyes(composite, lm, donor, lm).astype(np.int32)

    a = eyes.eye_alpha(lm, 384)
    # Outside the eye region nothing moves.
    assert np.array_equal(out[a == 0], composite.astype(np.int32)[a == 0])
    # The liner is gone where the region is whole: those pixels are near the composite's skin now.
    line = _liner(np.zeros((384, 384), np.uint8), lm, 255) > 0
    whole = line & (a > 0.99)
    assert whole.sum() > 30
    assert np.abs(out[whole] - np.array(skin)).max(axis=1).mean() < 25
    # The donor's iris is there, darker than the skin around it, and the donor's colour is not.
    c = np.round(lm[36:42].mean(axis=0)).astype(int)
    assert out[c[1], c[0]].mean() < 0.5 * np.mean(skin)
    under = np.round(lm[[40, 41]].mean(axis=0) + [0, 0.05 * eyes.eye_distance(lm)]).astype(int)  # skin under the eye
    assert a[under[1], under[0]] > 0.99
    assert np.abs(out[under[1], under[0]] - np.array(skin)).max() < 20


def test_the_eye_region_stays_clear_of_the_brows_and_mouth(eyes):
    lm = _template()
    a = eyes.eye_alpha(lm, 384)
    for p in np.r_[lm[17:27], lm[48:68], lm[30:31]]:
        assert a[int(round(p[1])), int(round(p[0]))] < 0.05
    for p in lm[36:48]:
        assert a[int(round(p[1])), int(round(p[0]))] > 0.95


def test_every_eye_donor_is_recorded_as_a_contributor_with_its_licence(eyes):
    import json

    meta = json.loads((default_dir() / "identities.json").read_text())
    sources = (default_dir() / "SOURCES.md").read_text()
    donors = [e for e in meta["identities"] if "eyes" in e]
    assert len(donors) >= 30
    for e in donors:
        assert e["eyes"] in eyes.ALLOW
        assert e["eyes"] in e["contributors"]
        row = next(line for line in sources.splitlines() if line.startswith(f"| {e['eyes']} |"))
        assert e["name"] in row
        assert ("CC0" in row) if e["eyes"].startswith("cc0:") else any(
            lic in row for lic in ("MIT", "Apache", "BSD", "Boost"))
