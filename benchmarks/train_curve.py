"""Train the IMN on a photo folder and measure quality vs steps.

    python benchmarks/train_curve.py train DATA_DIR RUN_DIR [--minutes M] [--blocks K] [--growth G] ...
    python benchmarks/train_curve.py eval RUN_DIR/checkpoints [--faces /work/shared/data/faces]

`train` writes RUN_DIR/checkpoints/step_*.safetensors, RUN_DIR/checkpoints/train_log.jsonl and
RUN_DIR/imn_final.safetensors. `eval` measures each checkpoint on realistic pairs built from face
regions (256-512 px) of a photo folder, through an 8-bit PNG round trip, and appends to
RUN_DIR/checkpoints/eval.jsonl.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.nets.imn import ImnConfig  # noqa: E402
from imnkit.train import LossWeights, TrainConfig, TrainProgress, train  # noqa: E402


def cmd_train(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    run = Path(a.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(
        model=ImnConfig(num_blocks=a.blocks, growth=a.growth, hide=a.hide),
        steps=a.steps, max_minutes=a.minutes, crop=a.crop, batch=a.batch, pairs=a.pairs, lr=a.lr,
        weights=LossWeights(*a.lam), balance=a.balance, balance_offset_db=a.offset,
        bf16=not a.fp32, channels_last=not a.fp32, checkpoint_every=a.ckpt_every, keep_checkpoints=0,
        log_every=a.log_every, seed=a.seed, threads=a.threads,
    )
    (run / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    def cb(p: TrainProgress) -> None:
        if p.event == "step" and p.step % (a.log_every * 10):
            return
        print(f"{time.strftime('%H:%M:%S')} {p.event} step={p.step} t={p.elapsed_s:.0f}s {p.sec_per_step:.3f}s/it "
              f"lr={p.lr:.2e} loss={p.loss:.3e} rec_y={p.recovered_ypsnr:.2f} masked_y={p.masked_ypsnr:.2f} "
              f"lam_e={p.lambda_embed:.3f} rb={p.rollbacks} {p.message}", flush=True)

    train(cfg, a.data_dir, run / "imn_final.safetensors", "cpu", a.resume, cb,
          checkpoint_dir=run / "checkpoints")


def cmd_eval(a: argparse.Namespace) -> None:
    from imnkit.train.evaluate import build_eval_pairs, evaluate_weights
    from imnkit.train.checkpoint import list_checkpoints

    torch.set_num_threads(a.threads)
    ckpt_dir = Path(a.ckpt_dir)
    pairs = build_eval_pairs(a.faces, limit=a.limit, cache=ckpt_dir.parent / "eval_pairs.safetensors")
    out = ckpt_dir / "eval.jsonl"
    done = set()
    if out.exists():
        done = {json.loads(l)["file"] for l in out.read_text().splitlines() if l.strip()}
    ckpts = [Path(p) for p in a.only] if a.only else list_checkpoints(ckpt_dir)[:: a.every]
    for ck in ckpts:
        if ck.name in done and not a.only:
            continue
        res = evaluate_weights(ck, pairs, seed=1234)
        res["file"] = ck.name
        with out.open("a") as f:
            f.write(json.dumps(res) + "\n")
        print(json.dumps(res), flush=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("data_dir")
    t.add_argument("run_dir")
    t.add_argument("--minutes", type=float, default=85.0)
    t.add_argument("--steps", type=int, default=1_000_000)
    t.add_argument("--blocks", type=int, default=6)
    t.add_argument("--growth", type=int, default=24)
    t.add_argument("--hide", default="difference")
    t.add_argument("--crop", type=int, default=64)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--pairs", default="realistic")
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--lam", type=float, nargs=3, default=(1.0, 3.0, 1.0))
    t.add_argument("--balance", default="equalize")
    t.add_argument("--offset", type=float, default=0.0)
    t.add_argument("--fp32", action="store_true")
    t.add_argument("--ckpt-every", type=int, default=500)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--resume", default=None)
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("eval")
    e.add_argument("ckpt_dir")
    e.add_argument("--faces", default="/work/shared/data/faces")
    e.add_argument("--limit", type=int, default=20)
    e.add_argument("--every", type=int, default=1)
    e.add_argument("--only", nargs="*")
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(fn=cmd_eval)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
