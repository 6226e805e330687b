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
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.nets.imn import ImnConfig
from imnkit.train import LossWeights, TrainConfig, TrainProgress, train


def cmd_train(a: argparse.Namespace) -> None:
    torch.set_flush_denormal(True)  # before any thread pool exists, so workers inherit it
    torch.set_num_threads(a.threads)
    run = Path(a.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(
        model=ImnConfig(num_blocks=a.blocks, growth=a.growth, hide=a.hide),
        steps=a.steps, max_minutes=a.minutes, crop=a.crop, batch=a.batch, pairs=a.pairs, lr=a.lr,
        weights=LossWeights(*a.lam), balance=a.balance, balance_offset_db=a.offset,
        bf16=not a.fp32, channels_last=not a.fp32, checkpoint_every=a.ckpt_every, keep_checkpoints=0,
        log_every=a.log_every, seed=a.seed, threads=a.threads, warmup_steps=a.warmup,
        weight_ema_decay=a.ema,
    )
    (run / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    # Thread picker: on 2 cores shared with other jobs, OpenMP with 2 threads on a contended core is
    # several times slower per step than 1 thread; 2 threads win only when the other core is idle. Each
    # log window we read how much CPU the rest of the machine used (/proc/stat minus our own CPU time)
    # and switch after 3 windows agreeing.
    pick = {"cur": a.threads, "votes": 0, "last": None}

    def cpu_snapshot() -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            vals = [float(x) for x in f.readline().split()[1:]]
        busy = (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
        t = os.times()
        return time.monotonic(), busy, t.user + t.system

    def adapt(p: TrainProgress) -> None:
        if not a.threads_auto or p.event != "step" or a.device != "cpu":
            return
        now = cpu_snapshot()
        last, pick["last"] = pick["last"], now
        if last is None or now[0] - last[0] < 1.0:
            return
        others = ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0])  # cores used by others
        want = 2 if others < 0.3 else 1
        pick["votes"] = pick["votes"] + 1 if want != pick["cur"] else 0
        if pick["votes"] >= 3:
            pick["cur"], pick["votes"] = want, 0
            torch.set_num_threads(want)

    def cb(p: TrainProgress) -> None:
        adapt(p)
        if p.event == "step" and p.step % (a.log_every * 10):
            return
        print(f"{time.strftime('%H:%M:%S')} {p.event} step={p.step} t={p.elapsed_s:.0f}s {p.sec_per_step:.3f}s/it "
              f"lr={p.lr:.2e} loss={p.loss:.3e} rec_y={p.recovered_ypsnr:.2f} masked_y={p.masked_ypsnr:.2f} "
              f"lam_e={p.lambda_embed:.3f} rb={p.rollbacks} thr={pick['cur']} {p.message}", flush=True)

    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed crop and batch: let cuDNN pick its fastest kernels
    train(cfg, a.data_dir, run / "imn_final.safetensors", a.device, a.resume, cb,
          checkpoint_dir=run / "checkpoints", init_weights=a.init, pairs_cache=a.pairs_cache)


def cmd_eval(a: argparse.Namespace) -> None:
    from imnkit.train.checkpoint import list_checkpoints
    from imnkit.train.evaluate import build_eval_pairs, evaluate_weights

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


def cmd_best(a: argparse.Namespace) -> None:
    """Pick the checkpoint whose worse of recovered/masked Y-PSNR is highest (both bars are 47 dB)."""
    ckpt_dir = Path(a.ckpt_dir)
    rows = [json.loads(line) for line in (ckpt_dir / "eval.jsonl").read_text().splitlines() if line.strip()]
    best = max(rows, key=lambda r: (min(r["rec_y"], r["masked_y"]), r["rec_rgb"]))
    best = dict(best, path=str((ckpt_dir / best["file"]).resolve()))
    (ckpt_dir.parent / "BEST.json").write_text(json.dumps(best, indent=1) + "\n")
    for r in sorted(rows, key=lambda r: r.get("step", 0)):
        print(f"step {r.get('step')}: {r.get('train_minutes')} min  recovered Y {r['rec_y']} / RGB {r['rec_rgb']} / "
              f"SSIM {r.get('rec_ssim')}   masked Y {r['masked_y']} / RGB {r['masked_rgb']} / SSIM {r.get('masked_ssim')}")
    print("best:", json.dumps(best))


def cmd_bench(a: argparse.Namespace) -> None:
    """Time put on (forward) and put off (inverse) at square sizes, float32, like embed/extract."""
    from imnkit.nets.imn import InvertibleMaskNet, draw_aux_noise
    from imnkit.train.checkpoint import load_weights

    if a.ftz:
        torch.set_flush_denormal(True)
    torch.set_num_threads(a.threads)
    net = load_weights(a.weights) if a.weights else InvertibleMaskNet(num_blocks=a.blocks, growth=a.growth)
    net.eval()
    for size in a.sizes:
        x = torch.rand(1, 3, size, size)
        m = torch.rand(1, 3, size, size)
        n = draw_aux_noise(x.shape, 0)
        with torch.inference_mode():
            net(x, m)  # warm-up (oneDNN primitive creation)
            fwd, inv = [], []
            for _ in range(a.repeat):
                t = time.perf_counter()
                y, _ = net(x, m)
                fwd.append(time.perf_counter() - t)
                t = time.perf_counter()
                net.inverse(y, n)
                inv.append(time.perf_counter() - t)
        print(json.dumps({"size": size, "threads": a.threads, "ftz": a.ftz, "config": net.config.to_dict(),
                          "forward_s": round(min(fwd), 3), "inverse_s": round(min(inv), 3)}), flush=True)


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
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--no-threads-auto", dest="threads_auto", action="store_false")
    t.add_argument("--resume", default=None)
    t.add_argument("--init", default=None, help="start from these weights (fresh optimizer and schedule)")
    t.add_argument("--pairs-cache", default=None, help="swap pairs file: read if present, else built and written")
    t.add_argument("--device", default="cpu")
    t.add_argument("--warmup", type=int, default=0, help="linear lr warm-up steps")
    t.add_argument("--ema", type=float, default=0.999, help="weight-average decay (0: off)")
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("eval")
    e.add_argument("ckpt_dir")
    e.add_argument("--faces", default="/work/shared/data/faces")
    e.add_argument("--limit", type=int, default=20)
    e.add_argument("--every", type=int, default=1)
    e.add_argument("--only", nargs="*")
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(fn=cmd_eval)
    bb = sub.add_parser("best")
    bb.add_argument("ckpt_dir")
    bb.set_defaults(fn=cmd_best)
    b = sub.add_parser("bench")
    b.add_argument("--weights", default=None)
    b.add_argument("--blocks", type=int, default=6)
    b.add_argument("--growth", type=int, default=24)
    b.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--repeat", type=int, default=2)
    b.add_argument("--ftz", action="store_true")
    b.set_defaults(fn=cmd_bench)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
