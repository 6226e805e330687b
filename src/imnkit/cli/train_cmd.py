"""`imnkit train`: train the invertible network on a folder of photos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import err_console, escape, handle_errors


def _parse_lambdas(text: str):
    from ..errors import UsageError
    from ..train import LossWeights

    try:
        e, r, low = (float(v) for v in text.split(":"))
    except ValueError:
        raise UsageError(f"--lambda must look like embed:recover:low (e.g. 1:3:1), got '{text}'") from None
    if min(e, r, low) < 0 or e + r + low == 0:
        raise UsageError(f"--lambda {text}: weights must be non-negative and not all zero")
    return LossWeights(embed=e, recover=r, low=low)


@app.command("train")
def train_cmd(
    data_dir: Annotated[Path, typer.Argument(help="Folder of training photos (searched recursively).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Final weights file (.safetensors).")],
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps.")] = 10_000,
    minutes: Annotated[Optional[float], typer.Option("--minutes", help="Stop after this wall time (the schedule follows it).")] = None,
    crop: Annotated[int, typer.Option("--crop", help="Square training crop side (even).")] = 64,
    batch: Annotated[int, typer.Option("--batch", help="Pairs per step.")] = 8,
    blocks: Annotated[int, typer.Option("--blocks", help="Coupling blocks K.")] = 6,
    growth: Annotated[int, typer.Option("--growth", help="Growth channels of each dense block.")] = 24,
    hide: Annotated[str, typer.Option("--hide", help="What is hidden: difference (protected - Mask) or image.")] = "difference",
    pairs: Annotated[str, typer.Option("--pairs", help="realistic (an elliptical region replaced by another colour-matched crop), swap (photos and their swap-stage Masks) or unrelated.")] = "realistic",
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 2e-4,
    warmup: Annotated[int, typer.Option("--warmup", help="Raise the rate linearly over the first N steps (use it with --init: a cold start at full rate wrecks trained weights).")] = 0,
    lambdas: Annotated[str, typer.Option("--lambda", help="Loss weights embed:recover:low-frequency.")] = "1:3:1",
    ema: Annotated[float, typer.Option("--ema", help="Decay of the moving average of the weights that checkpoints and the final file hold (0: off, the raw weights).")] = 0.999,
    balance: Annotated[str, typer.Option("--balance", help="fixed, or equalize (steer the embed weight so masked and recovered PSNR meet).")] = "fixed",
    balance_offset: Annotated[float, typer.Option("--balance-offset", help="With --balance equalize: the masked minus recovered Y-PSNR (dB, on training crops) to steer to; negative favours recovery.")] = 0.0,
    # None: TrainConfig's default (on), so the library and the command cannot disagree.
    bf16: Annotated[Optional[bool], typer.Option("--bf16/--fp32", help="bf16 autocast in training (inference stays float32); ~2x faster on CPU. Default: --bf16.", show_default=False)] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last", help="channels_last memory format in training. Default: --channels-last.", show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for training (default: torch's choice).")] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Write a safetensors checkpoint every N steps.")] = 500,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[Optional[str], typer.Option("--resume", help="A checkpoint file, or 'latest'.")] = None,
    init: Annotated[Optional[Path], typer.Option("--init", help="Start from these weights (same --blocks/--growth/--hide) with a fresh optimizer and schedule.")] = None,
    pairs_cache: Annotated[Optional[Path], typer.Option("--pairs-cache", help="With --pairs swap: read the pairs from this file if it exists, else build and write it (lets a machine without dlib train on them).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing weights file.")] = False,
) -> None:
    """Train the Invertible Mask Network (paper losses, 8-bit rounding in the loop, explosion guard)."""
    from ..devices import resolve_device
    from ..errors import UsageError
    from ..imageio import check_output_path
    from ..nets.imn import ImnConfig

    with handle_errors():
        if not data_dir.is_dir():
            raise UsageError(f"{data_dir}: not a folder of photos")
        if init is not None and not init.is_file():
            raise UsageError(f"--init {init}: no such weights file")
        if output.suffix != ".safetensors":
            raise UsageError(f"{output}: weights are written as .safetensors")
        check_output_path(output, overwrite=overwrite)
        dev = resolve_device(device)
        try:
            model = ImnConfig(num_blocks=blocks, growth=growth, hide=hide)
        except ValueError as err:
            raise UsageError(str(err)) from None
        from ..train import TrainConfig, train

        given = {k: v for k, v in (("bf16", bf16), ("channels_last", channels_last)) if v is not None}
        config = TrainConfig(model=model, steps=steps, max_minutes=minutes, crop=crop, batch=batch, pairs=pairs,
                             lr=lr, weights=_parse_lambdas(lambdas), balance=balance, balance_offset_db=balance_offset,
                             checkpoint_every=checkpoint_every, seed=seed, threads=threads, warmup_steps=warmup,
                             weight_ema_decay=ema, **given)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=err_console) as progress:
            task = progress.add_task("train", total=steps, status="")

            def on_progress(p) -> None:
                if p.event == "step":
                    status = (f"loss {p.loss:.4g}  masked {p.masked_ypsnr:.1f} dB  recovered {p.recovered_ypsnr:.1f} dB"
                              f"  lr {p.lr:.2g}")
                    progress.update(task, completed=p.step, status=status)
                    if not err_console.is_terminal and p.step % 100 == 0:  # a log file gets plain lines
                        err_console.print(f"step {p.step}: {status}  {p.sec_per_step:.2f} s/step")
                if p.event in ("rollback", "checkpoint") and p.message:
                    progress.console.print(f"{p.event}: {escape(p.message)}")

            path = train(config, data_dir, output, dev, resume=resume, progress_callback=on_progress,
                         init_weights=init, pairs_cache=pairs_cache)
    err_console.print(f"wrote {escape(str(path))}")
