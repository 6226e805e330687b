import numpy as np
import pytest
import pywt
import torch

from imnkit.bundle import Bundle
from imnkit.dwt import HaarDWT, HaarIWT, haar_dwt, haar_iwt
from imnkit.errors import UsageError
from imnkit.stage import StageContext, get_stage, run_stage


@pytest.mark.parametrize("shape", [(1, 3, 2, 2), (2, 3, 64, 96), (1, 12, 256, 128)])
def test_inverse_is_exact_to_float32_rounding(shape):
    torch.manual_seed(0)
    x = torch.rand(shape)
    y = haar_dwt(x)
    assert y.shape == (shape[0], 4 * shape[1], shape[2] // 2, shape[3] // 2)
    assert (haar_iwt(y) - x).abs().max().item() <= 1e-6


def test_orthonormal_energy_is_preserved():
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert torch.allclose(haar_dwt(x).pow(2).sum(), x.pow(2).sum())


def test_coefficients_match_pywavelets():
    """Our band order is LL, HL, LH, HH; PyWavelets gives cA, (cH, cV, cD): LL=cA, HL=cV, LH=cH, HH=cD."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 16, 24))
    y = haar_dwt(torch.from_numpy(x)).numpy()
    ca, (ch, cv, cd) = pywt.dwt2(x, "haar", axes=(-2, -1))
    c = 3
    np.testing.assert_allclose(y[:, 0:c], ca, atol=1e-12)
    np.testing.assert_allclose(y[:, c : 2 * c], cv, atol=1e-12)
    np.testing.assert_allclose(y[:, 2 * c : 3 * c], ch, atol=1e-12)
    np.testing.assert_allclose(y[:, 3 * c :], cd, atol=1e-12)
    np.testing.assert_allclose(haar_iwt(torch.from_numpy(y)).numpy(), pywt.idwt2((ca, (ch, cv, cd)), "haar", axes=(-2, -1)), atol=1e-12)


def test_modules_equal_functions_and_hold_no_state():
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(HaarDWT()(x), haar_dwt(x))
    assert torch.equal(HaarIWT()(haar_dwt(x)), haar_iwt(haar_dwt(x)))
    assert HaarDWT().state_dict() == {}


def test_input_is_not_modified():
    x = torch.rand(1, 3, 8, 8)
    before = x.clone()
    haar_iwt(haar_dwt(x))
    assert torch.equal(x, before)


@pytest.mark.parametrize("bad, match", [
    (torch.rand(1, 3, 7, 8), "even height and width"),
    (torch.rand(3, 8, 8), r"\(B, C, H, W\)"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "floating-point"),
])
def test_bad_inputs_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        haar_dwt(bad)


def test_iwt_needs_multiple_of_four_channels():
    with pytest.raises(ValueError, match="divisible by 4"):
        haar_iwt(torch.rand(1, 6, 4, 4))


def _image_bundle(h, w):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Bundle(tensors={"image.protected": torch.from_numpy(img)}), img


def test_stage_round_trip_through_bundle():
    stage = get_stage("dwt")
    bundle, img = _image_bundle(32, 48)
    ctx = StageContext(device=torch.device("cpu"))
    run_stage(stage, bundle, stage.resolve_params({}), ctx)
    assert bundle.tensors["dwt.image.protected"].shape == (1, 12, 16, 24)
    run_stage(stage, bundle, stage.resolve_params({"inverse": True}), ctx)
    back = bundle.tensors["iwt.image.protected"][0].permute(1, 2, 0).numpy() * 255
    assert np.abs(back - img).max() < 1e-3
    assert [h["stage"] for h in bundle.history] == ["dwt", "dwt"]


def test_stage_odd_sizes_error_or_pad():
    stage = get_stage("dwt")
    ctx = StageContext(device=torch.device("cpu"))
    bundle, img = _image_bundle(31, 47)
    with pytest.raises(UsageError, match="47x31.*even"):
        run_stage(stage, bundle, stage.resolve_params({}), ctx)
    run_stage(stage, bundle, stage.resolve_params({"odd": "pad"}), ctx)
    assert bundle.tensors["dwt.image.protected"].shape == (1, 12, 16, 24)
    run_stage(stage, bundle, stage.resolve_params({"inverse": True}), ctx)
    back = bundle.tensors["iwt.image.protected"][0].permute(1, 2, 0).numpy() * 255
    assert back.shape == (31, 47, 3) and np.abs(back - img).max() < 1e-3
