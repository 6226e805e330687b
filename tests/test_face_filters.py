"""The shared Gaussian blurs of imnkit.face.filters."""

import numpy as np

from imnkit.face.filters import MIN_SIGMA, SWAP_BLUR, gaussian_blur, masked_blur


def test_tiny_sigma_returns_the_image_itself():
    img = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    assert gaussian_blur(img, MIN_SIGMA / 2) is img


def test_shrunk_blur_is_close_to_the_full_one():
    img = np.zeros((200, 200), np.float32)
    img[80:120, 80:120] = 1.0
    full = gaussian_blur(img, 12.0, border=SWAP_BLUR["border"])
    fast = gaussian_blur(img, 12.0, **SWAP_BLUR)
    assert fast.shape == full.shape and np.abs(fast - full).max() < 0.01


def test_masked_blur_ignores_pixels_outside_the_mask():
    img = np.full((40, 40, 3), 100.0, np.float32)
    img[:, 20:] = 255.0  # outside the mask: must not leak in
    mask = np.zeros((40, 40), np.uint8)
    mask[:, :20] = 1
    out = masked_blur(img, mask, 8.0)
    assert np.allclose(out[:, :20], 100.0, atol=0.5)
