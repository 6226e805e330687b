import numpy as np
from PIL import Image
from typer.testing import CliRunner

from imnkit.cli import app
from imnkit.weights import build


def test_train_command_writes_loadable_weights_and_resumes(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "w.safetensors"
    args = ["train", str(data), "-o", str(out), "--steps", "4", "--crop", "16", "--batch", "2", "--blocks", "1",
            "--growth", "4", "--device", "cpu", "--checkpoint-every", "2", "--threads", "1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.stderr
    net, meta = build(str(out))  # a local weights file names its architecture in its metadata
    assert net.config.num_blocks == 1 and net.config.hide == "difference"
    assert sorted(p.name for p in (tmp_path / "w_checkpoints").glob("step_*")) == ["step_00000002.safetensors", "step_00000004.safetensors"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = CliRunner().invoke(app, ["train", str(tmp_path / "none"), "-o", str(tmp_path / "x.safetensors")])
    assert bad.exit_code == 2 and "not a folder" in bad.stderr
    lam = CliRunner().invoke(app, ["train", str(data), "-o", str(tmp_path / "y.safetensors"), "--lambda", "1:x:1"])
    assert lam.exit_code == 2 and "embed:recover:low" in lam.stderr
    ema = CliRunner().invoke(app, ["train", str(data), "-o", str(tmp_path / "y.safetensors"), "--ema", "1"])
    assert ema.exit_code == 2 and "--ema" in ema.stderr and not (tmp_path / "y.safetensors").exists()
    # Fine-tuning from those weights, with a warm-up; a missing --init file is a usage error.
    tuned = tmp_path / "tuned.safetensors"
    ft = CliRunner().invoke(app, args[:3] + [str(tuned)] + args[4:] + ["--init", str(out), "--warmup", "2",
                                                                    "--balance", "equalize", "--balance-offset", "-1.5"])
    assert ft.exit_code == 0, ft.stderr
    from imnkit.train import load_checkpoint

    ck = load_checkpoint(tmp_path / "tuned_checkpoints" / "step_00000004.safetensors")
    assert ck.state["train_config"]["balance_offset_db"] == -1.5 and ck.state["train_config"]["balance"] == "equalize"
    assert build(str(tuned))[0].config == net.config
    missing = CliRunner().invoke(app, ["train", str(data), "-o", str(tmp_path / "z.safetensors"), "--init",
                                       str(tmp_path / "none.safetensors")])
    assert missing.exit_code == 2 and "no such weights file" in missing.stderr


def test_train_command_defaults_are_the_library_defaults(tmp_path):
    """`imnkit train` takes its defaults from TrainConfig: bf16/channels_last read it, the rest must equal it."""
    import typer.main

    from imnkit.train import TrainConfig, load_checkpoint

    lib = TrainConfig()
    params = {p.name: p.default for p in typer.main.get_command(app).commands["train"].params}
    assert params["bf16"] is None and params["channels_last"] is None  # unset: TrainConfig decides
    lam = tuple(float(v) for v in params["lambdas"].split(":"))
    assert lam == (lib.weights.embed, lib.weights.recover, lib.weights.low)
    same = {"steps": "steps", "minutes": "max_minutes", "crop": "crop", "batch": "batch", "pairs": "pairs",
            "lr": "lr", "warmup": "warmup_steps", "ema": "weight_ema_decay", "balance": "balance",
            "balance_offset": "balance_offset_db", "threads": "threads", "checkpoint_every": "checkpoint_every",
            "seed": "seed"}
    assert {cli: params[cli] for cli in same} == {cli: getattr(lib, field) for cli, field in same.items()}
    assert (params["blocks"], params["growth"], params["hide"]) == (lib.model.num_blocks, lib.model.growth, lib.model.hide)

    data = tmp_path / "photos"
    data.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(data / "a.png")
    base = ["train", str(data), "--steps", "1", "--crop", "16", "--batch", "1", "--blocks", "1", "--growth", "4",
            "--device", "cpu", "--threads", "1"]
    for name, flags, want in (("default", [], (lib.bf16, lib.channels_last)), ("fp32", ["--fp32", "--no-channels-last"], (False, False))):
        r = CliRunner().invoke(app, base + ["-o", str(tmp_path / f"{name}.safetensors")] + flags)
        assert r.exit_code == 0, r.stderr
        cfg = load_checkpoint(tmp_path / f"{name}_checkpoints" / "step_00000001.safetensors").state["train_config"]
        assert (cfg["bf16"], cfg["channels_last"]) == want
