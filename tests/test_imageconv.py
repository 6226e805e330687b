"""uint8 <-> float image conversion: exact round trip, layout, rounding, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imnkit.imageconv import to_float, to_uint8


def test_round_trip_is_exact_for_every_8bit_value() -> None:
    img = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3) % 256
    img = img.astype(np.uint8)
    x = to_float(img)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x[0, :, 2, 5], torch.from_numpy(img[2, 5]).float() / 255.0)  # channel c of pixel (y, x)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    back = to_uint8(x)
    assert back.dtype == torch.uint8 and back.is_contiguous() and np.array_equal(back.numpy(), img)
    # A tensor image (as a bundle holds it) converts the same way as the array.
    assert torch.equal(to_float(torch.from_numpy(img)), x)


def test_to_uint8_rounds_to_nearest_and_clamps() -> None:
    x = torch.tensor([-0.2, 0.4 / 255, 0.6 / 255, 254.4 / 255, 1.3]).view(1, 1, 1, 5)
    assert to_uint8(x).flatten().tolist() == [0, 0, 1, 254, 255]
    y = torch.rand(1, 3, 4, 4, requires_grad=True)
    assert to_uint8(y).shape == (4, 4, 3)  # detached, no autograd error


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((1, 4, 4, 3), np.uint8)])
def test_to_float_refuses_non_images(bad) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, C\) uint8"):
        to_float(bad)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 4, 4), torch.zeros(3, 4, 4), torch.zeros(1, 3, 4, 4, dtype=torch.uint8)])
def test_to_uint8_refuses_other_tensors(bad) -> None:
    with pytest.raises(ValueError, match=r"\(1, C, H, W\) float"):
        to_uint8(bad)
