"""The eye/cheek detail measures of benchmarks/mask_detail.py can fail: blur, noise and dark lids show.

Run on scikit-image's astronaut and on a synthetic face layout, never on the faces set.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def md():
    spec = importlib.util.spec_from_file_location("mask_detail_bench", BENCH / "mask_detail.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def face(md):
    """A textured 'face' (the astronaut photo resized) with a synthetic 68-point layout over it."""
    data = pytest.importorskip("skimage.data")
    img = cv2.resize(data.astronaut(), (400, 400), interpolation=cv2.INTER_AREA)
    return img, md._synthetic_landmarks()


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def test_same_image_reads_one(md, face):
    img, lm = face
    fig = md.region_figures(img, lm, md.face_width(lm))
    assert all(v == pytest.approx(1.0) for v in md.compare(fig, fig).values())


def test_blurred_eyes_lower_the_eye_sharpness(md, face):
    img, lm = face
    y = md.luminance(img)
    eyes = md.regions(y.shape, lm, y)
    smeared = img.copy()
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    sel = eyes["eye_l"] | eyes["eye_r"]
    smeared[sel] = blurred[sel]
    w = md.face_width(lm)
    r = md.compare(md.region_figures(img, lm, w), md.region_figures(smeared, lm, w))
    assert r["eye_sharpness"] < md.BAND[0]
    assert r["cheek_sharpness"] == pytest.approx(1.0, abs=0.05)  # the cheeks were not touched


def test_noise_raises_the_grain(md, face):
    img, lm = face
    w = md.face_width(lm)
    r = md.compare(md.region_figures(img, lm, w), md.region_figures(_noisy(img, 8.0), lm, w))
    assert r["cheek_grain"] > md.BAND[1]
    assert r["eye_grain"] > md.BAND[1]


def test_dark_lids_lower_the_ring(md, face):
    img, lm = face
    y = md.luminance(img)
    regs = md.regions(y.shape, lm, y)
    dark = img.astype(np.int16)
    dark[regs["eye_l_ring"] | regs["eye_r_ring"]] -= 50
    dark = np.clip(dark, 0, 255).astype(np.uint8)
    w = md.face_width(lm)
    assert md.compare(md.region_figures(img, lm, w), md.region_figures(dark, lm, w))["dark_ring"] < md.BAND[0]


def test_summary_counts_the_band(md):
    rows = [{"ratio": {m: v for m in md.MEASURES}} for v in (0.5, 1.0, 1.1, 2.0)]
    s = md.summarise(rows)
    assert s["eye_sharpness"]["within_band_pct"] == 50.0
    assert s["eye_sharpness"]["median"] == pytest.approx(1.05)


def test_a_drawn_liner_shows_in_the_dark_lines_not_much_in_the_ring(md, face):
    img, lm = face
    lined = img.copy()
    for idx in (np.r_[36:40], np.r_[42:46]):  # each upper lid, corner to corner
        pts = np.round(md.grown(lm[idx], 1.15)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(lined, [pts], False, (10, 10, 10), 3)
    w = md.face_width(lm)
    r = md.compare(md.region_figures(img, lm, w), md.region_figures(lined, lm, w))
    assert r["dark_lines"] < md.BAND[0]
    assert r["dark_lines"] < r["dark_ring"]
