"""Training library: data loading, pairs, STE rounding in the loop, checkpoints/resume, explosion guard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from imnkit.errors import InputError, UsageError
from imnkit.nets.imn import ImnConfig
from imnkit.train import (
    LossWeights,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    TrainProgress,
    load_checkpoint,
    load_images,
    load_weights,
    make_pair_source,
    quantize_ste,
    train,
)
from imnkit.train.checkpoint import list_checkpoints, read_metadata
from imnkit.train.data import CropSampler, RealisticPairs

TINY = ImnConfig(num_blocks=1, growth=4, hide="difference")


pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth_image(seed: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 4, 4, generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0]
    img = img + 0.05 * torch.rand(3, h, w, generator=g)
    return (img.clamp(0, 1) * 255).round().byte()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    for i in range(4):
        arr = _smooth_image(i, 48, 40 + 8 * i).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(root / ("sub" if i % 2 else ".") / f"img{i}.{'png' if i < 2 else 'jpg'}")
    rgba = _smooth_image(9, 40, 40).permute(1, 2, 0).numpy()
    Image.fromarray(rgba).convert("RGBA").save(root / "alpha.png")
    Image.fromarray(rgba).convert("L").save(root / "gray.webp")
    # EXIF orientation 6 (rotate 90): stored 60 wide x 40 high, shown 40 wide x 60 high.
    im = Image.fromarray(_smooth_image(11, 40, 60).permute(1, 2, 0).numpy())
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(root / "rotated.jpg", exif=exif.tobytes())
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG broken")
    return root


def _fixed_source(batch: int = 2, crop: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prot = torch.rand(batch, 3, crop, crop, generator=g)
    mask = torch.rand(batch, 3, crop, crop, generator=g)

    def source(b: int, c: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return prot.clone(), mask.clone()

    return source


def _cfg(**kw) -> TrainConfig:
    base = {"model": TINY, "steps": 20, "crop": 16, "batch": 2, "lr": 1e-3, "checkpoint_every": 0,
            "snapshot_every": 5, "log_every": 1, "max_short_side": 64, "bf16": False, "channels_last": False}
    base.update(kw)
    return TrainConfig(**base)


def test_load_images(data_dir: Path) -> None:
    imgs = load_images(data_dir, max_short_side=44)
    assert len(imgs) == 7  # 4 + rgba + gray + rotated; text and broken files skipped
    for img in imgs:
        assert img.dtype == torch.uint8 and img.shape[0] == 3 and min(img.shape[1:]) <= 44
    # Sorted order: alpha, gray, img0, img2, rotated, sub/img1, sub/img3. rotated.jpg is stored 60x40
    # with EXIF orientation 6, so it must come back 40 wide and 60 high.
    assert tuple(imgs[4].shape[1:]) == (60, 40)
    with pytest.raises(InputError):
        load_images(data_dir / "sub" / "missing")


def test_pair_sources(data_dir: Path) -> None:
    imgs = load_images(data_dir)
    gen = torch.Generator().manual_seed(0)
    for kind in ("realistic", "unrelated"):
        prot, mask = make_pair_source(kind, imgs)(3, 32, gen)
        assert prot.shape == mask.shape == (3, 3, 32, 32)
        assert prot.min() >= 0 and prot.max() <= 1 and mask.min() >= 0 and mask.max() <= 1
    # Realistic: the Mask equals the protected crop outside the ellipse (corners) and differs inside.
    prot, mask = RealisticPairs(CropSampler(imgs))(4, 32, gen)
    torch.testing.assert_close(mask[..., :3, :3], prot[..., :3, :3])
    assert (mask[..., 12:20, 12:20] - prot[..., 12:20, 12:20]).abs().mean() > 0
    with pytest.raises(ValueError):
        make_pair_source("nonsense", imgs)


def test_random_draws_are_reproducible_and_in_range() -> None:
    from imnkit.train.data import rand_index, rand_uniform

    a = rand_uniform(torch.Generator().manual_seed(5), -0.3, 0.7, 1000)
    assert a.shape == (1000,) and a.dtype == torch.float32 and -0.3 <= float(a.min()) and float(a.max()) < 0.7
    assert float(a.std()) > 0.2  # spread over the interval, not a constant
    assert torch.equal(a, rand_uniform(torch.Generator().manual_seed(5), -0.3, 0.7, 1000))
    gen = torch.Generator().manual_seed(5)
    picks = [rand_index(gen, 4) for _ in range(200)]
    assert set(picks) == {0, 1, 2, 3} and all(isinstance(i, int) for i in picks)
    gen = torch.Generator().manual_seed(5)
    assert picks == [rand_index(gen, 4) for _ in range(200)]


def test_quantize_ste() -> None:
    x = torch.tensor([-0.1, 0.2, 0.5004, 1.3], requires_grad=True)
    q = quantize_ste(x)
    assert torch.equal(q * 255, torch.round(q * 255))
    assert q.min() >= 0 and q.max() <= 1
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones(4))


def test_masked_is_8bit_in_loop() -> None:
    trainer = Trainer(_cfg(), _fixed_source())
    for _ in range(3):
        event, res, _ = trainer.step()
    assert event == "step"
    assert not torch.allclose(res.masked, _fixed_source()(2, 16, None)[1])  # net moved
    scaled = res.masked * 255
    torch.testing.assert_close(scaled, torch.round(scaled), atol=1e-4, rtol=0)


def test_loss_decreases_on_fixed_batch() -> None:
    trainer = Trainer(_cfg(weights=LossWeights(1, 3, 1)), _fixed_source())
    losses = []
    for _ in range(40):
        event, res, _ = trainer.step()
        assert event == "step"
        losses.append(res.loss)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_bf16_channels_last_step() -> None:
    trainer = Trainer(_cfg(bf16=True, channels_last=True), _fixed_source())
    event, res, _ = trainer.step()
    assert event == "step" and res is not None and res.loss == res.loss


def test_train_checkpoint_and_resume(data_dir: Path, tmp_path: Path) -> None:
    events: list[TrainProgress] = []
    out = tmp_path / "w.safetensors"
    cfg = _cfg(steps=6, checkpoint_every=3, keep_checkpoints=0)
    train(cfg, data_dir, out, progress_callback=events.append)
    ckpts = list_checkpoints(tmp_path / "w_checkpoints")
    assert [p.name for p in ckpts] == ["step_00000003.safetensors", "step_00000006.safetensors"]
    assert {e.event for e in events} >= {"step", "checkpoint", "done"}
    last_step = [e for e in events if e.event == "step"][-1]
    assert last_step.step == 6 and last_step.recovered_ypsnr > 0 and last_step.masked_ypsnr > 0

    meta = read_metadata(out)
    assert meta["imnkit.arch"] == "imn"
    assert ImnConfig.from_json(meta["imnkit.config"]) == TINY
    assert json.loads(meta["imnkit.train_summary"])["steps"] == 6
    net = load_weights(out)
    assert net.config == TINY

    ck = load_checkpoint(ckpts[0])
    assert ck.state["step"] == 3 and ck.optim["state"] and "gen" in ck.rng
    # The final file holds the weight average, and a checkpoint offers its average for inference.
    assert ck.average is not None and set(ck.average) == set(ck.model)
    final_ck = load_checkpoint(ckpts[-1])
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, final_ck.average[k], atol=0, rtol=0)
    assert any(not torch.equal(final_ck.model[k], final_ck.average[k]) for k in final_ck.model)
    for k, v in load_weights(ckpts[-1]).state_dict().items():
        assert torch.equal(v, final_ck.average[k])

    # Resume from step 3 with a 6-step budget: ends at 6, and matches the uninterrupted run exactly.
    events2: list[TrainProgress] = []
    out2 = tmp_path / "w2.safetensors"
    train(cfg, data_dir, out2, resume=ckpts[0], progress_callback=events2.append,
          checkpoint_dir=tmp_path / "resumed")
    steps = [e.step for e in events2 if e.event == "step"]
    assert steps[0] == 4 and steps[-1] == 6
    a, b = load_weights(out).state_dict(), load_weights(out2).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)

    # "latest" picks the newest checkpoint; with the budget already reached nothing more is trained.
    events3: list[TrainProgress] = []
    train(cfg, data_dir, tmp_path / "w3.safetensors", resume="latest", progress_callback=events3.append,
          checkpoint_dir=tmp_path / "w_checkpoints")
    assert not [e for e in events3 if e.event == "step"]


def test_the_steps_of_train(data_dir: Path, tmp_path: Path) -> None:
    """train() is these public steps; each does its part on its own."""
    from imnkit.train.loop import TrainingRun, build_pair_source, resume_trainer, run_summary

    cfg = _cfg(steps=5, checkpoint_every=2, keep_checkpoints=2, log_every=2)
    assert isinstance(build_pair_source(cfg, data_dir), RealisticPairs)
    with pytest.raises(UsageError, match="needs a data folder"):
        build_pair_source(cfg, None)
    with pytest.raises(UsageError, match="holds swap pairs"):
        build_pair_source(cfg, data_dir, pairs_cache=tmp_path / "pairs.safetensors")

    ckpt_dir = tmp_path / "ckpts"
    ckpt_dir.mkdir()
    trainer = Trainer(cfg, _fixed_source())
    resume_trainer(trainer, "latest", ckpt_dir)  # nothing to resume: a fresh start
    assert trainer.step_count == 0
    events: list[TrainProgress] = []
    run = TrainingRun(trainer, ckpt_dir, events.append, eval_fn=lambda net, step: {"seen": step}, eval_every=3)
    try:
        run.run_steps()
        run.finish()
    finally:
        run.close()
    got = [(e.event, e.step) for e in events]
    assert got == [("step", 2), ("checkpoint", 2), ("eval", 3), ("step", 4), ("checkpoint", 4),
                   ("checkpoint", 5), ("eval", 5)]
    assert [p.name for p in list_checkpoints(ckpt_dir)] == ["step_00000004.safetensors", "step_00000005.safetensors"]
    logged = [json.loads(line) for line in (ckpt_dir / "train_log.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in logged] == got and logged[2]["extra"]["seen"] == 3
    summary = run_summary(trainer, "custom", None)
    assert summary["steps"] == 5 and summary["pairs"] == "custom" and summary["lambda"] == [1.0, 3.0, 1.0]
    assert summary["train_masked_ypsnr"] > 0

    again = Trainer(cfg, _fixed_source())
    resume_trainer(again, "latest", ckpt_dir)
    assert again.step_count == 5


def _poisoned_source(at_calls: set[int], value: float):
    base = _fixed_source()
    calls = {"n": 0}

    def source(b: int, c: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        calls["n"] += 1
        prot, mask = base(b, c, gen)
        if calls["n"] in at_calls:
            prot = torch.full_like(prot, float("nan")) if math.isnan(value) else prot * value
        return prot, mask

    return source


def test_guard_rolls_back_on_nan() -> None:
    trainer = Trainer(_cfg(snapshot_every=5), _poisoned_source({11}, float("nan")))
    for _ in range(10):
        assert trainer.step()[0] == "step"
    snap = {k: v.clone() for k, v in trainer._snapshot["model"].items()}
    avg_snap = {k: v.clone() for k, v in trainer._snapshot["average"].items()}
    assert trainer._snapshot["step"] == 10
    lr_before = trainer.current_lr()
    event, _, msg = trainer.step()
    assert event == "rollback" and "non-finite" in msg
    assert trainer.rollbacks == 1 and trainer.step_count == 10
    assert trainer.current_lr() == pytest.approx(lr_before * 0.5)
    for k, v in trainer.net.state_dict().items():
        assert torch.equal(v, snap[k])
    for k, v in trainer.average.items():  # the weight average goes back with the weights
        assert torch.equal(v, avg_snap[k])
    assert trainer.average_updates == 10
    event, res, _ = trainer.step()
    assert event == "step" and res.loss == res.loss


def test_guard_skips_then_rolls_back_on_spike() -> None:
    trainer = Trainer(_cfg(snapshot_every=5, spike_patience=3), _poisoned_source({26, 27, 28}, 1e3))
    for _ in range(25):
        assert trainer.step()[0] == "step"
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    assert [trainer.step()[0] for _ in range(3)] == ["skip", "skip", "rollback"]
    assert trainer.rollbacks == 1 and trainer.step_count == 25
    for k, v in trainer.net.state_dict().items():  # skipped spikes never touched the weights
        assert torch.equal(v, before[k])


def test_guard_gives_up() -> None:
    trainer = Trainer(_cfg(max_rollbacks=1), _poisoned_source({2, 3}, float("nan")))
    trainer.step()
    assert trainer.step()[0] == "rollback"
    with pytest.raises(TrainingDivergedError):
        trainer.step()


def test_equalize_balance_steers_lambda() -> None:
    trainer = Trainer(_cfg(balance="equalize"), _fixed_source())
    trainer.step_count = 100
    trainer.ema_masked, trainer.ema_recovered = 10.0, 0.1  # masked far worse -> weigh embedding more
    trainer._update_running(type("R", (), {"masked_y_mse": 10.0, "recovered_y_mse": 0.1})())
    assert trainer.lambda_embed > 1.0
    trainer.lambda_embed = 1.0
    trainer.ema_masked, trainer.ema_recovered = 0.1, 10.0
    trainer._update_running(type("R", (), {"masked_y_mse": 0.1, "recovered_y_mse": 10.0})())
    assert trainer.lambda_embed < 1.0


def test_evaluate_net_png_round_trip() -> None:
    from imnkit.nets.imn import InvertibleMaskNet
    from imnkit.train.evaluate import evaluate_net, png_round_trip

    x = torch.rand(1, 3, 16, 16)
    back = png_round_trip(x)
    torch.testing.assert_close(back, torch.round(x * 255) / 255, atol=1e-6, rtol=0)
    pairs = [(torch.round(torch.rand(1, 3, 32, 32) * 255) / 255, torch.round(torch.rand(1, 3, 32, 32) * 255) / 255)]
    res = evaluate_net(InvertibleMaskNet(TINY), pairs, ssim=False)
    assert res["n"] == 1 and res["masked_y"] == float("inf")  # identity at init: masked == Mask
    assert res["rec_y"] < 30  # untrained: recovery is noise


def test_evaluation_ssim_is_the_metrics_ssim() -> None:
    """Training evaluation reports the SSIM of `imnkit metrics` (Gaussian 11/1.5), not scikit-image's 7x7 default."""
    from skimage.metrics import structural_similarity

    from imnkit.imageconv import to_uint8
    from imnkit.metrics import ssim
    from imnkit.nets.imn import InvertibleMaskNet
    from imnkit.train.evaluate import evaluate_net, ssim_8bit

    a = _smooth_image(1, 48, 48).float()[None] / 255
    b = (a + 0.08 * torch.rand(a.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    ua, ub = to_uint8(a).numpy(), to_uint8(b).numpy()
    ours = ssim_8bit(a, b)
    assert ours == ssim(ua, ub)
    gaussian = structural_similarity(ua, ub, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ours == pytest.approx(gaussian, abs=1e-9)
    assert abs(ours - structural_similarity(ua, ub, channel_axis=2, data_range=255)) > 1e-3  # the 7x7 window differs
    res = evaluate_net(InvertibleMaskNet(TINY), [(a, b)], ssim=True)
    assert res["masked_ssim"] == 1.0  # identity at init: masked == Mask


def test_swap_pairs_are_crops_of_a_photo_and_its_mask(faces_dir):
    """The swap pair source: same place in photo and Mask, differing inside the face only."""
    from imnkit.imageio import load_image
    from imnkit.train.swap_pairs import SwapPairs

    img = torch.from_numpy(load_image(faces_dir / "portrait_02.png")).permute(2, 0, 1).contiguous()
    src = SwapPairs.from_images([img])
    (prot, mask, boxes), = src.pairs
    assert boxes and not torch.equal(prot, mask)
    y0, x0, y1, x1 = boxes[0]
    outside = torch.ones(prot.shape[-2:], dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert torch.equal(prot[:, outside], mask[:, outside])
    gen = torch.Generator().manual_seed(0)
    p, m = src(4, 32, gen)
    assert p.shape == m.shape == (4, 3, 32, 32) and 0 <= float(p.min()) and float(p.max()) <= 1
    assert (p - m).abs().mean() > 0  # the face differs


def _synthetic_swap_pairs():
    from imnkit.train.swap_pairs import SwapPairs

    photos = [_smooth_image(20 + i, 48, 56) for i in range(2)]
    pairs = []
    for i, photo in enumerate(photos):
        mask = photo.clone()
        boxes = [(4, 6, 20, 30), (24, 30, 44, 52)] if i == 0 else [(10, 10, 40, 40)]
        for y0, x0, y1, x1 in boxes:
            mask[:, y0:y1, x0:x1] = _smooth_image(40 + i, y1 - y0, x1 - x0)
        pairs.append((photo, mask, boxes))
    return SwapPairs(pairs)


def test_swap_pairs_cache_round_trip(tmp_path: Path) -> None:
    """The cache keeps the boxes and the Mask boxes exactly; the photo is JPEG, so close but lossy."""
    from imnkit.train.swap_pairs import SwapPairs

    src = _synthetic_swap_pairs()
    path = src.save(tmp_path / "pairs.safetensors")
    assert not list(tmp_path.glob(".*tmp"))  # written atomically
    back = SwapPairs.load(path)
    assert len(back.pairs) == len(src.pairs)
    for (p, m, boxes), (p2, m2, boxes2) in zip(src.pairs, back.pairs):
        assert boxes2 == [tuple(b) for b in boxes]
        assert p2.dtype == torch.uint8 and p2.shape == p.shape
        assert (p2.float() - p.float()).abs().mean() < 4.0  # JPEG q95 of a noisy synthetic photo
        outside = torch.ones(p.shape[-2:], dtype=torch.bool)
        for y0, x0, y1, x1 in boxes:
            assert torch.equal(m2[:, y0:y1, x0:x1], m[:, y0:y1, x0:x1])  # lossless inside
            outside[y0:y1, x0:x1] = False
        assert torch.equal(m2[:, outside], p2[:, outside])  # outside: exactly the (decoded) photo
    gen = torch.Generator().manual_seed(0)
    prot, mask = back(3, 16, gen)
    assert prot.shape == mask.shape == (3, 3, 16, 16)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not a swap-pairs cache"):
        SwapPairs.load(tmp_path / "other.safetensors")


def test_train_reads_the_pairs_cache_without_a_data_folder(tmp_path: Path) -> None:
    cache = _synthetic_swap_pairs().save(tmp_path / "pairs.safetensors")
    out = train(_cfg(steps=2, pairs="swap"), None, tmp_path / "w.safetensors", pairs_cache=cache)
    assert json.loads(read_metadata(out)["imnkit.train_summary"])["pairs"] == "swap"
    with pytest.raises(UsageError, match="swap"):
        train(_cfg(steps=2, pairs="realistic"), None, tmp_path / "x.safetensors", pairs_cache=cache)


def test_warmup_raises_the_rate_linearly() -> None:
    trainer = Trainer(_cfg(lr=1e-3, warmup_steps=4, steps=100), _fixed_source())
    rates = []
    for _ in range(6):
        rates.append(trainer.current_lr())
        trainer.step()
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    with pytest.raises(UsageError):
        _cfg(warmup_steps=-1)


def test_init_weights_starts_from_them_with_a_fresh_schedule(tmp_path: Path) -> None:
    first = train(_cfg(steps=3), None, tmp_path / "a.safetensors", pair_source=_fixed_source())
    start = load_weights(first).state_dict()
    seen = {}

    def grab(p: TrainProgress) -> None:
        seen.setdefault("first_step", p.step)

    # steps=1: the result is the init weights after exactly one update, from step 0.
    second = train(_cfg(steps=1, lr=1e-9), None, tmp_path / "b.safetensors", pair_source=_fixed_source(),
                   init_weights=first, progress_callback=grab)
    assert seen["first_step"] == 1
    for k, v in load_weights(second).state_dict().items():
        torch.testing.assert_close(v, start[k], atol=1e-6, rtol=0)
    with pytest.raises(UsageError, match="holds"):
        train(_cfg(steps=1, model=ImnConfig(num_blocks=2, growth=4, hide="difference")), None,
              tmp_path / "c.safetensors", pair_source=_fixed_source(), init_weights=first)


def test_weight_average_is_the_ema_of_the_live_weights() -> None:
    trainer = Trainer(_cfg(weight_ema_decay=0.6), _fixed_source())
    expected = {k: v.detach().clone().double() for k, v in trainer.net.state_dict().items()}
    for t in range(1, 6):
        assert trainer.step()[0] == "step"
        decay = min(0.6, (1 + t) / (10 + t))  # the ramp, then the configured decay from t = 5
        for k, v in trainer.net.state_dict().items():
            expected[k] = decay * expected[k] + (1 - decay) * v.double()
    for k, v in trainer.average.items():
        torch.testing.assert_close(v.double(), expected[k], atol=1e-6, rtol=0)
    averaged = trainer.averaged_net().state_dict()
    assert all(torch.equal(averaged[k], trainer.average[k]) for k in averaged)
    with pytest.raises(UsageError, match="weight_ema_decay"):
        _cfg(weight_ema_decay=1.0)


def test_without_averaging_the_final_file_is_the_live_net(tmp_path: Path) -> None:
    out = train(_cfg(steps=3, weight_ema_decay=0.0, checkpoint_every=3), None, tmp_path / "w.safetensors",
                pair_source=_fixed_source())
    ck = load_checkpoint(list_checkpoints(tmp_path / "w_checkpoints")[-1])
    assert ck.average is None
    for k, v in load_weights(out).state_dict().items():
        assert torch.equal(v, ck.model[k])


def test_average_weights_is_the_uniform_mean(tmp_path: Path) -> None:
    from imnkit.errors import WeightsError
    from imnkit.nets.imn import InvertibleMaskNet
    from imnkit.train import average_weights
    from imnkit.train.checkpoint import save_weights

    files = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = InvertibleMaskNet(TINY)
        for p in net.parameters():
            torch.nn.init.normal_(p)
        files.append(save_weights(net, tmp_path / f"n{seed}.safetensors"))
    states = [load_weights(f).state_dict() for f in files]
    mean = average_weights(files).state_dict()
    for k in mean:
        torch.testing.assert_close(mean[k], (states[0][k] + states[1][k] + states[2][k]) / 3, atol=1e-6, rtol=0)
    other = save_weights(InvertibleMaskNet(ImnConfig(num_blocks=2, growth=4, hide="difference")), tmp_path / "o.safetensors")
    with pytest.raises(WeightsError, match="holds"):
        average_weights([files[0], other])
    with pytest.raises(WeightsError):
        average_weights([])


def test_load_weights_is_strict(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from imnkit.errors import WeightsError
    from imnkit.nets.imn import InvertibleMaskNet
    from imnkit.train.checkpoint import save_weights

    good = save_weights(InvertibleMaskNet(TINY), tmp_path / "good.safetensors")
    tensors, meta = load_file(str(good)), read_metadata(good)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match=rf"bad.safetensors: .*missing 1: \[{dropped}\]"):
        load_weights(tmp_path / "bad.safetensors")


def test_weights_and_pairs_cache_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    import safetensors.torch

    import imnkit.train.checkpoint as C
    from imnkit.errors import OutputError
    from imnkit.nets.imn import InvertibleMaskNet

    net = InvertibleMaskNet(TINY)
    weights = C.save_weights(net, tmp_path / "w.safetensors")
    pairs = _synthetic_swap_pairs()
    cache = pairs.save(tmp_path / "pairs.safetensors")
    before = {p: p.read_bytes() for p in (weights, cache)}

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C, "save_file", disk_full)
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OutputError, match="nothing was written"):
        C.save_weights(net, weights)
    with pytest.raises(OutputError, match="nothing was written"):
        pairs.save(cache)
    assert {p: p.read_bytes() for p in (weights, cache)} == before  # the old files are intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.safetensors", "w.safetensors"]  # no temp left


def test_eval_fn_sees_the_averaged_weights(tmp_path: Path) -> None:
    seen: list[dict[str, torch.Tensor]] = []

    def grab(net, step: int) -> dict:
        seen.append({k: v.clone() for k, v in net.state_dict().items()})
        return {"step_seen": step}

    out = train(_cfg(steps=4, weight_ema_decay=0.9), None, tmp_path / "w.safetensors", pair_source=_fixed_source(),
                eval_fn=grab, eval_every=4)
    assert len(seen) == 1
    for k, v in load_weights(out).state_dict().items():
        assert torch.equal(v, seen[0][k])
