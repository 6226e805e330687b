import io
import json
import math

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

from imnkit.cli import app
from imnkit.errors import UsageError
from imnkit.imageio import load_image
import torch

from imnkit.metrics import compare, luma, parse_region, psnr, psnr_y, ssim


def skimage_reference(a, b):
    af, bf = a.astype(np.float64), b.astype(np.float64)
    return {
        "psnr_rgb": peak_signal_noise_ratio(a, b, data_range=255),
        "psnr_y": peak_signal_noise_ratio(rgb2ycbcr(a)[..., 0], rgb2ycbcr(b)[..., 0], data_range=255),
        "ssim": structural_similarity(a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False),
        "rmse": math.sqrt(mean_squared_error(af, bf)),
        "mae": float(np.mean(np.abs(af - bf))),
    }


def jpeg_copy(img, quality=60):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def assert_agree(a, b):
    ours = compare(a, b).to_dict()
    ref = skimage_reference(a, b)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6, rel=1e-9), key
    return ours


def test_agrees_with_skimage_on_synthetic(photo, rng):
    noisy = np.clip(photo + rng.normal(0, 5, photo.shape), 0, 255).astype(np.uint8)
    assert_agree(photo, noisy)


def test_agrees_with_skimage_on_real_photos(faces_dir):
    files = sorted(p for p in faces_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:8]
    assert files
    for path in files:
        img = load_image(path)
        img = img[:512, :512]  # keep the test quick on two cores
        assert_agree(img, jpeg_copy(img))


def test_identical_images_give_infinite_psnr_and_json_inf(tmp_path, photo):
    assert psnr(photo, photo) == math.inf and psnr_y(photo, photo) == math.inf
    assert ssim(photo, photo) == pytest.approx(1.0)
    p = tmp_path / "a.png"
    Image.fromarray(photo).save(p)
    result = CliRunner().invoke(app, ["metrics", str(p), str(p), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["psnr_rgb"] == "inf" and data["psnr_y"] == "inf" and data["rmse"] == 0.0
    assert {"psnr_rgb", "psnr_y", "ssim", "rmse", "mae"} <= set(data)


def test_different_sizes_are_a_clear_error(tmp_path, photo):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(photo).save(a)
    Image.fromarray(photo[:50]).save(b)
    result = CliRunner().invoke(app, ["metrics", str(a), str(b)])
    assert result.exit_code == 2
    assert "differ in size: 128x96 vs 128x50" in result.stderr


def test_region_restricts_the_measurement(tmp_path, photo):
    other = photo.copy()
    other[:10] = 0  # differs only in the top rows
    assert compare(photo, other, (20, 0, 96, 128)).psnr_rgb == math.inf
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(photo).save(a)
    Image.fromarray(other).save(b)
    result = CliRunner().invoke(app, ["metrics", str(a), str(b), "--json", "--region", "20,0,96,128"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["psnr_y"] == "inf"
    ref = skimage_reference(photo[5:40, 3:60], other[5:40, 3:60])
    assert compare(photo, other, (5, 3, 40, 60)).psnr_rgb == pytest.approx(ref["psnr_rgb"], abs=1e-6)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,10,5,20", "-1,0,5,5"])
def test_bad_regions(text):
    with pytest.raises(UsageError, match="region"):
        parse_region(text)


def test_region_outside_image(photo):
    with pytest.raises(UsageError, match="outside"):
        compare(photo, photo, (0, 0, 200, 10))


def test_luma_is_bt601_for_arrays_and_tensors(photo):
    # Studio swing on 0-255 arrays: scikit-image's rgb2ycbcr Y.
    np.testing.assert_allclose(luma(photo), rgb2ycbcr(photo)[..., 0], rtol=0, atol=1e-9)
    # The same Y from a (B, 3, H, W) tensor in [0, 1], in the tensor's dtype.
    t = torch.from_numpy(photo).permute(2, 0, 1)[None].double() / 255.0
    y = luma(t, channel_axis=1, peak=1.0)
    assert y.dtype == torch.float64 and y.shape == (1, *photo.shape[:2])
    np.testing.assert_allclose(y[0].numpy(), luma(photo), rtol=0, atol=1e-9)
    # Full range: the grey level 0.299 R + 0.587 G + 0.114 B, on the input's scale.
    np.testing.assert_allclose(luma(photo, studio=False), photo.astype(np.float64) @ [0.299, 0.587, 0.114],
                               rtol=0, atol=1e-9)
    assert float(luma(np.array([0, 0, 0]))) == 16.0
    with pytest.raises(ValueError, match="3 channels"):
        luma(photo[..., :2])
