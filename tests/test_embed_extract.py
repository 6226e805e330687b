"""embed / extract structure of the inn method: regions, aux contents, integrity checks, bit-exact outside the regions.

These use a small randomly initialised network (recovery quality is the benchmark's job, and
test_shipped_weights checks the shipped model); they check what must hold for any weights.
"""


import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imnkit.api import extract_file
from imnkit.bundle import Bundle
from imnkit.cli import app
from imnkit.boxes import even_box, merge_boxes
from imnkit.imageio import pixels_digest
from imnkit.errors import UsageError
from imnkit.imageio import load_image, save_png
from imnkit.protect.crypto import AUTH_FAILED
from imnkit.nets.imn import InvertibleMaskNet
from imnkit.stage import StageContext, get_stage, run_stage
from imnkit.train import save_weights


def random_net(seed=0, hide="difference"):
    torch.manual_seed(seed)
    net = InvertibleMaskNet(num_blocks=2, growth=8, hide=hide)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.fixture
def weights_file(tmp_path):
    return str(save_weights(random_net(), tmp_path / "w.safetensors"))


@pytest.fixture
def pair(rng):
    y, x = np.mgrid[0:80, 0:100]
    protected = np.stack([x * 2, y * 3, x + y], -1).astype(np.uint8)
    mask = protected.copy()
    mask[20:50, 30:70] = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # the "face" that changed
    return protected, mask


def embed_bundle(protected, mask, weights, regions=((20, 30, 50, 70),), seed=5, with_dwt=False):
    b = Bundle(tensors={"image.protected": torch.from_numpy(protected), "mask.image": torch.from_numpy(mask)})
    if regions is not None:
        b.tensors["swap.regions"] = torch.tensor(regions, dtype=torch.int64).reshape(-1, 4)
    ctx = StageContext(device=torch.device("cpu"))
    if with_dwt:
        dwt = get_stage("dwt")
        run_stage(dwt, b, dwt.resolve_params({"keys": "image.protected,mask.image"}), ctx)
    st = get_stage("embed")
    run_stage(st, b, st.resolve_params({"method": "inn", "weights": weights, "seed": seed, "margin": 3}), ctx)
    return b


def test_even_box_and_merge():
    assert even_box((21, 31, 49, 69), 80, 100, 0) == (20, 30, 50, 70)
    assert even_box((0, 0, 79, 99), 79, 99, 4) == (0, 0, 78, 98)  # odd image: stay inside
    with pytest.raises(UsageError, match="too small"):
        even_box((5, 5, 5, 5), 1, 1)
    assert merge_boxes([(0, 0, 10, 10), (5, 5, 20, 20), (30, 30, 40, 40)]) == [(0, 0, 20, 20), (30, 30, 40, 40)]


def test_masked_equals_mask_outside_region_and_aux_holds_no_pixels(pair, weights_file):
    protected, mask = pair
    b = embed_bundle(protected, mask, weights_file)
    masked = np.asarray(b.tensors["image.masked"])
    (y0, x0, y1, x1), = b.tensors["aux.regions"].tolist()
    assert (y0, x0, y1, x1) == (16, 26, 54, 74)  # 3 px margin, made even
    outside = np.ones(masked.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(masked[outside], mask[outside])
    assert not np.array_equal(masked[y0:y1, x0:x1], mask[y0:y1, x0:x1])
    aux = b.subset("aux.")
    assert set(aux.tensors) == {"aux.regions", "aux.size"}
    assert all(t.numel() <= 4 for t in aux.tensors.values())  # boxes and sizes, no image data
    assert aux.meta["aux.masked_sha256"] == pixels_digest(masked) and aux.meta["aux.seed"] == 5
    assert set(aux.meta) == {"aux.format", "aux.weights", "aux.weights_sha256", "aux.seed", "aux.masked_sha256", "aux.hide"}


def test_dwt_stage_coefficients_give_the_same_masked_image(pair, weights_file):
    protected, mask = pair
    a = embed_bundle(protected, mask, weights_file)
    b = embed_bundle(protected, mask, weights_file, with_dwt=True)
    diff = np.abs(np.asarray(a.tensors["image.masked"]).astype(int) - np.asarray(b.tensors["image.masked"]).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001  # float rounding at most flips a rare 8-bit step


def write_outputs(tmp_path, b, name="photo"):
    masked = tmp_path / f"{name}.masked.png"
    save_png(masked, np.asarray(b.tensors["image.masked"]))
    aux = b.subset("aux.").save(tmp_path / f"{name}.aux.safetensors")
    return masked, aux


def test_extract_restores_everything_outside_regions_exactly(tmp_path, pair, weights_file):
    protected, mask = pair
    b = embed_bundle(protected, mask, weights_file)
    masked_path, aux_path = write_outputs(tmp_path, b)
    result = extract_file(masked_path, aux_path, weights=weights_file)
    assert result.output == tmp_path / "photo.recovered.png"
    rec = load_image(result.output)
    (y0, x0, y1, x1), = b.tensors["aux.regions"].tolist()
    outside = np.ones(rec.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(rec[outside], np.asarray(b.tensors["image.masked"])[outside])
    # deterministic: the same inputs give the same bytes
    again = extract_file(masked_path, aux_path, tmp_path / "again.png", weights=weights_file)
    assert again.output.read_bytes() == result.output.read_bytes()


def test_embed_is_deterministic(pair, weights_file):
    protected, mask = pair
    a = embed_bundle(protected, mask, weights_file).tensors["image.masked"]
    b = embed_bundle(protected, mask, weights_file).tensors["image.masked"]
    assert np.array_equal(a, b)


def cli(*args):
    return CliRunner().invoke(app, ["extract", *[str(a) for a in args]])


def test_integrity_errors_and_force(tmp_path, pair, weights_file):
    protected, mask = pair
    b = embed_bundle(protected, mask, weights_file)
    masked_path, aux_path = write_outputs(tmp_path, b)
    masked = load_image(masked_path)

    # A JPEG re-encoding of the masked image.
    jpeg = tmp_path / "photo2.masked.jpg"
    Image.fromarray(masked).save(jpeg, quality=95)
    r = cli(jpeg, "--aux", aux_path, "--weights", weights_file)
    assert r.exit_code == 4 and "re-encoded copy" in r.stderr and not (tmp_path / "photo2.recovered.png").exists()

    # A resized copy.
    small = tmp_path / "small.png"
    Image.fromarray(masked).resize((50, 40)).save(small)
    r = cli(small, "--aux", aux_path, "--weights", weights_file)
    assert r.exit_code == 4 and "resized" in r.stderr

    # Another photo of the same size.
    other = tmp_path / "other.png"
    save_png(other, protected)
    r = cli(other, "--aux", aux_path, "--weights", weights_file)
    assert r.exit_code == 4 and "another photo" in r.stderr

    # Other weights.
    other_w = str(save_weights(random_net(seed=9), tmp_path / "other_w.safetensors"))
    r = cli(masked_path, "--aux", aux_path, "--weights", other_w)
    assert r.exit_code == 4 and "other weights" in r.stderr

    # --force tries anyway and says so.
    r = cli(jpeg, "--aux", aux_path, "--weights", weights_file, "--force")
    assert r.exit_code == 0 and "forced despite" in r.stderr
    assert (tmp_path / "photo2.recovered.png").exists()
    assert jpeg.exists() and load_image(masked_path).tobytes() == masked.tobytes()  # inputs untouched


def test_corrupt_and_wrong_aux(tmp_path, pair, weights_file):
    protected, mask = pair
    masked_path, aux_path = write_outputs(tmp_path, embed_bundle(protected, mask, weights_file))
    bad = tmp_path / "bad.aux.safetensors"
    bad.write_bytes(aux_path.read_bytes()[:-5])
    # a changed aux, of any method, fails to open with the one line (exit 4: docs/errors.md)
    r = cli(masked_path, "--aux", bad, "--weights", weights_file)
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr
    not_aux = Bundle(tensors={"x": torch.zeros(1)}).save(tmp_path / "not_aux.safetensors")
    r = cli(masked_path, "--aux", not_aux, "--weights", weights_file)
    assert r.exit_code == 2 and "not an imnkit aux file" in r.stderr  # the wrong file given: a usage problem
    r = cli(masked_path, "--aux", tmp_path / "absent.safetensors")
    assert r.exit_code == 1 and "no such file" in r.stderr
    assert not (tmp_path / "photo.recovered.png").exists()


def test_existing_output_is_kept(tmp_path, pair, weights_file):
    protected, mask = pair
    masked_path, aux_path = write_outputs(tmp_path, embed_bundle(protected, mask, weights_file))
    out = tmp_path / "photo.recovered.png"
    out.write_bytes(b"keep me")
    r = cli(masked_path, "--aux", aux_path, "--weights", weights_file)
    assert r.exit_code == 1 and "already exists" in r.stderr and out.read_bytes() == b"keep me"
    assert cli(masked_path, "--aux", aux_path, "--weights", weights_file, "--overwrite").exit_code == 0


def test_no_region_passes_through(tmp_path, pair, weights_file):
    protected, _ = pair
    b = embed_bundle(protected, protected, weights_file, regions=[])
    assert np.array_equal(b.tensors["image.masked"], protected)
    masked_path, aux_path = write_outputs(tmp_path, b)
    result = extract_file(masked_path, aux_path, weights=weights_file)
    assert np.array_equal(load_image(result.output), protected) and any("nothing to recover" in n for n in result.notes)


def _face_like_pair(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth 'photo' and its 'Mask': the same photo with another smooth patch in an ellipse."""
    g = torch.Generator().manual_seed(3)
    def smooth(n):
        low = torch.rand(1, 3, 6, 6, generator=g)
        return torch.nn.functional.interpolate(low, size=(n, n), mode="bicubic", align_corners=False).clamp(0, 1)
    protected = smooth(size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    ellipse = (((yy - size / 2) / (size * 0.35)) ** 2 + ((xx - size / 2) / (size * 0.28)) ** 2 < 1).float()
    mask = protected * (1 - ellipse) + smooth(size) * ellipse
    return torch.round(protected * 255) / 255, torch.round(mask * 255) / 255


def test_refine_improves_recovery_from_the_8bit_image():
    """refine_masked: better recovery from the saved 8-bit pixels, the masked image looks the same."""
    from imnkit.embedding import load_network
    from imnkit.nets.imn import put_off, put_on, refine_masked
    from imnkit.train.evaluate import rgb_psnr, y_psnr

    net = load_network("imn.default", torch.device("cpu"))
    protected, mask = _face_like_pair()
    seed = 7
    with torch.inference_mode():  # as the stages run it
        plain = put_on(net, protected, mask)
        assert refine_masked(net, protected, mask, plain, seed, 0) is plain
        refined = refine_masked(net, protected, mask, plain, seed, 8)
    as_8bit = [torch.round(m.clamp(0, 1) * 255) / 255 for m in (plain, refined)]
    with torch.inference_mode():
        rec_plain, rec_refined = (put_off(net, m, seed) for m in as_8bit)
    gain = y_psnr(rec_refined, protected) - y_psnr(rec_plain, protected)
    assert gain > 0.5, gain
    assert rgb_psnr(rec_refined, protected) > rgb_psnr(rec_plain, protected)
    assert y_psnr(as_8bit[1], mask) > y_psnr(as_8bit[0], mask) - 0.5  # the masked image looks the same


def test_refine_keeps_the_best_point_it_has_scored():
    """A wild step size cannot make refine worse than the plain embedding: it returns the start."""
    from imnkit.embedding import load_network
    from imnkit.nets.imn import masked_error, put_off, put_on, refine_masked

    net = load_network("imn.default", torch.device("cpu"))
    protected, mask = _face_like_pair()
    seed = 3

    def objective(m: torch.Tensor) -> float:
        q = torch.round(m.clamp(0, 1) * 255) / 255
        with torch.inference_mode():
            return float(torch.mean((put_off(net, q, seed) - protected) ** 2) + masked_error(q, mask, 0.5))

    with torch.inference_mode():
        plain = put_on(net, protected, mask)
        wild = refine_masked(net, protected, mask, plain, seed, 3, lr=0.5)
        tuned = refine_masked(net, protected, mask, plain, seed, 3)
    assert torch.equal(wild, plain.clamp(0, 1))
    assert objective(tuned) < objective(plain)


def test_masked_error_weighs_luma_over_colour_and_equals_rgb_for_grey_error():
    from imnkit.nets.imn import masked_error

    mask = torch.full((1, 3, 8, 8), 0.5)
    luma = mask + 0.01  # the same change in R, G and B: all in Y
    colour = mask + torch.tensor([0.01, -0.01 * 0.299 / 0.587, 0.0]).view(1, 3, 1, 1)  # Y unchanged
    assert torch.isclose(masked_error(luma, mask, None), torch.tensor(1e-4))
    assert masked_error(colour, mask, 0.5) < masked_error(colour, mask, None)
    assert masked_error(luma, mask, 0.5) > masked_error(luma, mask, None)
    noise = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.01
    ratio = masked_error(mask + noise, mask, 1.0) / masked_error(mask + noise, mask, None)
    assert 0.9 < float(ratio) < 1.1  # scaled so that error spread over R, G, B costs what it does in RGB


def test_refine_of_a_large_region_recomputes_blocks_and_gives_the_same_pixels(monkeypatch):
    """Above REFINE_CHECKPOINT_PIXELS refine keeps only each block's inputs: same result, less memory."""
    import imnkit.nets.imn as imn

    net = random_net(seed=1)
    g = torch.Generator().manual_seed(0)
    protected = torch.rand(1, 3, 32, 32, generator=g)
    mask = (protected + 0.05 * torch.randn(1, 3, 32, 32, generator=g)).clamp(0, 1)
    start = imn.put_on(net, protected, mask).detach()
    plain = imn.refine_masked(net, protected, mask, start, 5, 3)
    calls = []
    original = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr(imn, "REFINE_CHECKPOINT_PIXELS", 16 * 16)
    recomputed = imn.refine_masked(net, protected, mask, start, 5, 3)
    assert calls and torch.equal(plain, recomputed)


def test_refine_works_when_imnkit_is_first_imported_in_inference_mode():
    """The CLI imports the network module inside torch.inference_mode: nothing module-level may end up
    in refine's autograd (it once did: 'Inference tensors cannot be saved for backward')."""
    import subprocess
    import sys

    code = ("import torch\n"
            "with torch.inference_mode():\n"
            "    from imnkit.nets.imn import InvertibleMaskNet, put_on, refine_masked\n"
            "    torch.manual_seed(0)\n"
            "    net = InvertibleMaskNet(num_blocks=1, growth=4)\n"
            "    p, m = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)\n"
            "    refine_masked(net, p, m, put_on(net, p, m), 1, 2)\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_the_embed_stage_reports_refine_steps_over_all_regions(pair, weights_file):
    """refine takes minutes on a CPU: the stage reports each step to the run's progress bar."""
    protected, mask = pair
    calls = []
    b = Bundle(tensors={"image.protected": torch.from_numpy(protected), "mask.image": torch.from_numpy(mask),
                        "swap.regions": torch.tensor([[4, 4, 20, 20], [40, 60, 70, 90]])})
    ctx = StageContext(device=torch.device("cpu"), options={"on_steps": lambda *a: calls.append(a)})
    st = get_stage("embed")
    run_stage(st, b, st.resolve_params({"method": "inn", "weights": weights_file, "margin": 0, "refine": 2}), ctx)
    assert calls == [("refine", 1, 4), ("refine", 2, 4), ("refine", 3, 4), ("refine", 4, 4)]


@pytest.mark.parametrize("fixture", ["inn_v1", "inn_v2"])
def test_an_inn_aux_made_with_the_earlier_default_weights_still_opens(tmp_path, fixture):
    # tests/data/inn_v1: a 160 px crop of the bundled astronaut masked by `imnkit run recipes/mask-inn.toml`
    # at cff089b with the shipped imn.default (sha256 3bc083ad…); inn_v2: the same crop masked at
    # cf0e8dd with imn.default of phase 7 (sha256 a10bee73…). The aux names the weights and their
    # digest; extraction uses the shipped weights pinned to that digest (once imn.default is retrained,
    # the old file is shipped under its own name with its pin: this test then checks it is found).
    from pathlib import Path

    from imnkit.weights import shipped_with_digest, weights_digest

    data = Path(__file__).resolve().parent / "data" / fixture
    aux = Bundle.from_bytes((data / "aux.safetensors").read_bytes(), framework="numpy")
    digest = aux.meta["aux.weights_sha256"]
    name = shipped_with_digest(digest)
    assert name is not None and weights_digest(name) == digest
    out = tmp_path / "r.png"
    r = cli(data / "masked.png", "--aux", data / "aux.safetensors", "-o", out)
    assert r.exit_code == 0, r.output
    assert "other weights" not in r.output
    diff = load_image(out).astype(float) - load_image(data / "protected.png")
    assert 10 * np.log10(255**2 / max(np.mean(diff**2), 1e-9)) > 40
    # Weights named on the command line are used as named, and checked against the aux's digest.
    if weights_digest("imn.default") != digest:
        r = cli(data / "masked.png", "--aux", data / "aux.safetensors", "--weights", "imn.default",
                "-o", tmp_path / "r2.png")
        assert r.exit_code != 0 and "other weights" in r.output and not (tmp_path / "r2.png").exists()
