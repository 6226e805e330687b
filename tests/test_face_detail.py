"""imnkit.face.detail: the Mask's grain and eye sharpness made the photo's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imnkit.face import detail


def _noisy(shape: tuple[int, int], base: np.ndarray | float, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.broadcast_to(np.asarray(base, np.float32), shape).astype(np.float32)
    noise = rng.normal(0.0, sigma, shape[:2]).astype(np.float32)[..., None]
    return np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)


def _textured(seed: int = 3) -> np.ndarray:
    """Smooth shading plus mid-scale texture (pores, wrinkles): structure that is not grain."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.normal(0, 120, (160, 160)).astype(np.float32), (0, 0), 2.0)
    ramp = np.linspace(110, 150, 160, dtype=np.float32)[None, :]
    return np.repeat((ramp + tex)[..., None], 3, axis=2)


def test_noise_sigma_reads_white_noise_as_its_sigma():
    sel = np.ones((160, 160), np.uint8)
    for sigma in (2.0, 5.0):
        assert detail.noise_sigma(_noisy((160, 160, 3), 128.0, sigma, 0), sel) == pytest.approx(sigma, rel=0.08)


def test_noise_sigma_barely_counts_texture():
    # Mid-scale texture of a spread far above the grain does not read as grain.
    sel = np.ones((160, 160), np.uint8)
    tex = np.clip(np.rint(_textured()), 0, 255).astype(np.uint8)
    assert detail.fine_detail(tex, sel) > 2 * detail.noise_sigma(tex, sel)


def test_match_grain_adds_the_photos_noise_not_its_texture():
    sel = np.ones((160, 160), np.uint8)
    photo = _noisy((160, 160, 3), _textured(), 3.0, 1)  # textured skin with 3 levels of grain
    smooth = np.full((160, 160, 3), 140, np.uint8)  # a composite: no grain at all
    out = detail.match_grain(smooth, photo, sel, seed=0)
    assert detail.noise_sigma(out, sel) == pytest.approx(detail.noise_sigma(photo, sel), rel=0.15)
    # The old rule (grain up to all the fine detail's spread) would have added far more.
    assert detail.noise_sigma(out, sel) < 0.8 * detail.fine_detail(photo, sel)


def test_match_grain_leaves_a_clean_photo_clean_and_is_seeded():
    sel = np.ones((160, 160), np.uint8)
    clean = np.full((160, 160, 3), 150, np.uint8)
    warped = np.full((160, 160, 3), 120, np.uint8)
    assert np.array_equal(detail.match_grain(warped, clean, sel, seed=0), warped)
    noisy = _noisy((160, 160, 3), 150.0, 4.0, 2)
    a, b = (detail.match_grain(warped, noisy, sel, seed=5) for _ in range(2))
    assert np.array_equal(a, b)


def test_match_grain_blurs_a_sharper_replacement():
    sel = np.ones((160, 160), np.uint8)
    photo = cv2.GaussianBlur(_noisy((160, 160, 3), 128.0, 6.0, 4), (0, 0), 2.0)
    sharp = _noisy((160, 160, 3), 128.0, 6.0, 5)
    out = detail.match_grain(sharp, photo, sel, seed=0)
    assert detail.fine_detail(out, sel) < 0.5 * detail.fine_detail(sharp, sel)


def _eye_layout() -> np.ndarray:
    """68 points with two eyes (36-41, 42-47) on a 200 px box; the rest unused by the eye step."""
    lm = np.zeros((68, 2))
    ang = np.deg2rad([180, 120, 60, 0, -60, -120])
    for base, cx in ((36, 60), (42, 140)):
        lm[base:base + 6] = np.c_[cx + 25 * np.cos(ang), 100 - 9 * np.sin(ang)]
    return lm


def _eye_patch(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.normal(0, 60, (200, 200)).astype(np.float32), (0, 0), 1.0)
    return np.clip(np.rint(np.repeat((128 + tex)[..., None], 3, axis=2)), 0, 255).astype(np.uint8)


def _eye_ratio(img: np.ndarray, lm: np.ndarray, size: float) -> float:
    fine, mid = max(0.6, detail.FINE * size), max(1.5, detail.MID * size)
    sel = np.zeros(img.shape[:2], bool)
    for idx in (np.r_[36:42], np.r_[42:48]):
        sel |= detail._poly(img.shape[:2], detail._grown(lm[idx], detail.EYE_GROW))
    return detail.sharpness_ratio(img, sel, fine, mid)


def test_smeared_eyes_are_sharpened_towards_the_photos():
    lm, size = _eye_layout(), 200.0
    photo = _eye_patch(0)
    smeared = cv2.GaussianBlur(_eye_patch(1), (0, 0), 0.8)
    out = detail.match_eye_sharpness(photo, smeared, lm, lm, size)
    want, before, after = (_eye_ratio(x, lm, size) for x in (photo, smeared, out))
    assert before < 0.7 * want
    assert abs(after - want) < 0.5 * abs(before - want)
    # Outside the eyes nothing moves.
    assert np.array_equal(out[:40], smeared[:40]) and np.array_equal(out[170:], smeared[170:])


def test_too_sharp_eyes_are_softened_and_matching_eyes_kept():
    lm, size = _eye_layout(), 200.0
    photo = cv2.GaussianBlur(_eye_patch(0), (0, 0), 1.2)
    sharp = _eye_patch(1)
    out = detail.match_eye_sharpness(photo, sharp, lm, lm, size)
    assert _eye_ratio(out, lm, size) < _eye_ratio(sharp, lm, size)
    same = detail.match_eye_sharpness(sharp, sharp, lm, lm, size)
    assert np.array_equal(same, sharp)
