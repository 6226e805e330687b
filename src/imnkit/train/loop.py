"""The IMN training loop: losses with 8-bit STE rounding, Adam with a step schedule, an explosion guard
with roll-back, safetensors checkpoints and resume.

Why the guard: NOTES.md saw this network blow up (recovery loss up by orders of magnitude, never coming
back) despite gradient clipping. The loop keeps an in-memory copy of the last healthy state; a non-finite
loss or gradient, or a loss far above the recent median for several steps, restores it and lowers the
learning rate.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch

from imnkit.errors import ImnkitError, UsageError
from imnkit.nets.imn import ImnConfig, InvertibleMaskNet
from imnkit.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from imnkit.train.data import PairSource, load_images, make_pair_source
from imnkit.train.losses import (
    LossWeights,
    ll_band,
    psnr_from_mse,
    quantize_ste,
    y_mse,
)
from imnkit.weights import load_strict

log = logging.getLogger(__name__)


class TrainingDivergedError(ImnkitError):
    """Training kept exploding after the allowed number of roll-backs."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored as JSON in every checkpoint).

    ``steps`` and ``max_minutes`` both bound the run; the learning-rate schedule follows whichever
    is further along, so a wall-clock-bounded run still decays its rate.
    """

    model: ImnConfig = field(default_factory=lambda: ImnConfig(num_blocks=6, growth=24, hide="difference"))
    steps: int = 10_000
    max_minutes: float | None = None
    crop: int = 64
    batch: int = 8
    pairs: Literal["realistic", "unrelated", "swap"] = "realistic"
    max_short_side: int = 512  # images are decoded once at this bounded size
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    weight_decay: float = 0.0
    lr_milestones: tuple[float, ...] = (0.5, 0.75, 0.9)  # fractions of the run
    lr_gamma: float = 0.5
    # Linear warm-up of the rate over the first steps. Adam's first updates move every weight by about
    # lr whatever its gradient, which can wreck trained weights when fine-tuning (--init) at full rate.
    warmup_steps: int = 0
    grad_clip: float = 1.0
    # Exponential moving average of the weights (Polyak averaging); 0 turns it off. The averaged weights
    # are what checkpoints offer for inference and what the final file holds: single checkpoints of this
    # net swing from one to the next, and an average smooths that and dilutes a transient spike
    # (docs/model-card.md).
    weight_ema_decay: float = 0.999
    weights: LossWeights = field(default_factory=LossWeights)
    balance: Literal["fixed", "equalize"] = "fixed"  # equalize: steer λ_embed so masked ≈ recovered PSNR
    balance_offset_db: float = 0.0  # target of masked − recovered Y-PSNR when balancing
    bf16: bool = True  # bf16 autocast in training only (inference is always float32); `imnkit train` default
    channels_last: bool = True  # channels_last memory format in training; `imnkit train` default
    checkpoint_every: int = 500
    keep_checkpoints: int = 3  # 0 keeps all
    snapshot_every: int = 100  # in-memory good state for the explosion guard
    spike_factor: float = 10.0
    spike_patience: int = 3
    max_rollbacks: int = 10
    rollback_lr_factor: float = 0.5
    log_every: int = 10
    seed: int = 0
    # torch threads for the run (None: torch's default). On a small machine shared with other jobs, more
    # OpenMP threads than idle cores make every step much slower: one thread is then the safe choice.
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.crop < 4 or self.crop % 2:
            raise UsageError(f"crop must be an even number >= 4, got {self.crop}")
        if self.batch < 1 or self.steps < 1:
            raise UsageError(f"batch and steps must be positive, got batch={self.batch} steps={self.steps}")
        if self.warmup_steps < 0:
            raise UsageError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr <= 0:
            raise UsageError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.weight_ema_decay < 1.0:
            raise UsageError(f"weight_ema_decay (--ema) must be in [0, 1) (0 turns the average off), got {self.weight_ema_decay}")
        if self.pairs not in ("realistic", "unrelated", "swap"):
            raise UsageError(f"pairs must be 'realistic', 'unrelated' or 'swap', got {self.pairs!r}")
        if self.balance not in ("fixed", "equalize"):
            raise UsageError(f"balance must be 'fixed' or 'equalize', got {self.balance!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["weights"] = asdict(self.weights)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        if "model" in kw:
            kw["model"] = ImnConfig.from_dict(kw["model"])
        if "weights" in kw:
            kw["weights"] = LossWeights(**kw["weights"])
        for k in ("betas", "lr_milestones"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


@dataclass
class TrainProgress:
    """What the progress callback receives (``event``: step, eval, checkpoint, rollback, skip, done)."""

    event: str
    step: int
    total_steps: int
    elapsed_s: float
    sec_per_step: float
    lr: float
    loss: float
    loss_embed: float
    loss_recover: float
    loss_low: float
    masked_ypsnr: float  # running, 8-bit masked vs Mask, BT.601 luma
    recovered_ypsnr: float  # running, recovered from the 8-bit masked vs protected
    lambda_embed: float
    rollbacks: int
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[TrainProgress], None]
EvalFn = Callable[[InvertibleMaskNet, int], dict[str, Any]]


@dataclass
class StepResult:
    """The losses of one step (weighted total and its three terms), the running-PSNR inputs, the batch."""

    loss: float
    embed: float
    recover: float
    low: float
    masked_y_mse: float
    recovered_y_mse: float
    masked: torch.Tensor  # the 8-bit (STE) masked batch, detached


class Trainer:
    """Holds the net, optimizer and guard state; :meth:`step` does one guarded update."""

    def __init__(
        self,
        config: TrainConfig,
        pair_source: PairSource,
        device: str | torch.device = "cpu",
        net: InvertibleMaskNet | None = None,
    ):
        # Small-weight nets on flat image regions can produce denormal floats, which are very slow on
        # x86 CPUs; flushing them to zero costs nothing.
        torch.set_flush_denormal(True)
        self.config = config
        self.pair_source = pair_source
        self.device = torch.device(device)
        self.net = (net or InvertibleMaskNet(config.model)).to(self.device)
        if self.net.config != config.model:
            raise UsageError("the net's config differs from TrainConfig.model")
        if config.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=config.lr, betas=config.betas, eps=config.eps,
            weight_decay=config.weight_decay,
        )
        self.gen = torch.Generator().manual_seed(config.seed)
        # Off the CPU the noise n is drawn where it is used: a (32, 3, 128, 128) draw on the CPU and its
        # copy cost more than a whole GPU step. The CPU path keeps drawing from self.gen (reproducible).
        self.noise_gen = None
        if self.device.type != "cpu":
            self.noise_gen = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.step_count = 0
        self.elapsed = 0.0  # training seconds, over all sessions (resume adds to it)
        self.lr_scale = 1.0  # lowered by each roll-back
        self.rollbacks = 0
        self.lambda_embed = 1.0  # multiplier on λ_embed and λ_low, steered when balance == "equalize"
        self.ema_masked = float("nan")
        self.ema_recovered = float("nan")
        self.guard_history: deque[float] = deque(maxlen=200)
        self.best_median = float("inf")
        self.consecutive_spikes = 0
        # The weight average: float32 copies of every state tensor, paired with the live ones once
        # (load_state_dict copies in place, so the pairing survives roll-backs and resume).
        self.average: dict[str, torch.Tensor] | None = None
        self.average_updates = 0
        if config.weight_ema_decay:
            live = self.net.state_dict()
            self.average = {k: v.detach().float().clone() for k, v in live.items()}
            self._average_pairs = [(self.average[k], live[k]) for k in live if live[k].is_floating_point()]
        self._snapshot: dict[str, Any] | None = None
        self.take_snapshot()

    # ----- schedule -------------------------------------------------------------------------
    def progress_fraction(self) -> float:
        frac = self.step_count / self.config.steps
        if self.config.max_minutes:
            frac = max(frac, self.elapsed / (60.0 * self.config.max_minutes))
        return min(frac, 1.0)

    def current_lr(self) -> float:
        frac = self.progress_fraction()
        decays = sum(1 for m in self.config.lr_milestones if frac >= m)
        warm = min(1.0, (self.step_count + 1) / self.config.warmup_steps) if self.config.warmup_steps else 1.0
        return self.config.lr * (self.config.lr_gamma**decays) * self.lr_scale * warm

    def done(self) -> bool:
        if self.step_count >= self.config.steps:
            return True
        return bool(self.config.max_minutes) and self.elapsed >= 60.0 * self.config.max_minutes

    # ----- guard ----------------------------------------------------------------------------
    # ----- weight average -------------------------------------------------------------------
    def update_average(self) -> None:
        """One EMA step; the decay ramps up as (1 + t) / (10 + t) so early weights fade fast (as timm)."""
        if self.average is None:
            return
        self.average_updates += 1
        t = self.average_updates
        decay = min(self.config.weight_ema_decay, (1 + t) / (10 + t))
        with torch.no_grad():
            avg, live = zip(*self._average_pairs)
            torch._foreach_lerp_(list(avg), [v.float() for v in live], 1.0 - decay)

    def averaged_net(self) -> InvertibleMaskNet:
        """A float32 copy of the net holding the averaged weights (the live net if averaging is off)."""
        net = InvertibleMaskNet(self.config.model).to(self.device)
        net.load_state_dict(self.average if self.average is not None else self.net.state_dict())
        return net.eval()

    def take_snapshot(self) -> None:
        self._snapshot = {
            "model": copy.deepcopy(self.net.state_dict()),
            "optim": copy.deepcopy(self.optimizer.state_dict()),
            "step": self.step_count,
            "average": copy.deepcopy(self.average),
            "average_updates": self.average_updates,
        }

    def rollback(self, reason: str) -> str:
        """Restore the last healthy state and lower the learning rate."""
        assert self._snapshot is not None
        self.rollbacks += 1
        if self.rollbacks > self.config.max_rollbacks:
            raise TrainingDivergedError(
                f"training diverged {self.rollbacks} times (last: {reason})",
                hint="lower --lr or use a smaller crop/batch",
            )
        self.net.load_state_dict(self._snapshot["model"])
        self.optimizer.load_state_dict(copy.deepcopy(self._snapshot["optim"]))
        self.step_count = self._snapshot["step"]
        if self.average is not None:
            for k, v in self._snapshot["average"].items():
                self.average[k].copy_(v)
            self.average_updates = self._snapshot["average_updates"]
        self.lr_scale *= self.config.rollback_lr_factor
        self.consecutive_spikes = 0
        msg = f"rolled back to step {self.step_count} ({reason}); lr scale now {self.lr_scale:g}"
        log.warning(msg)
        return msg

    def _is_spike(self, value: float) -> bool:
        if len(self.guard_history) < 20:
            return False
        return value > self.config.spike_factor * statistics.median(self.guard_history)

    # ----- one update -----------------------------------------------------------------------
    def compute(self, protected: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, StepResult]:
        """Forward, 8-bit STE rounding, inverse from the rounded image, and the weighted loss."""
        cfg = self.config
        hide_diff = cfg.model.hide == "difference"
        secret = protected - mask if hide_diff else protected
        if cfg.channels_last:
            secret, mask_in, noise = (t.contiguous(memory_format=torch.channels_last) for t in (secret, mask, noise))
        else:
            mask_in = mask
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext()
        with ctx:
            masked, _lost = self.net(secret, mask_in, allow_autocast=cfg.bf16)
            masked = masked.float()
            masked_q = quantize_ste(masked)
            rec_secret, rec_mask = self.net.inverse(masked_q, noise, allow_autocast=cfg.bf16)
        rec_secret, rec_mask = rec_secret.float(), rec_mask.float()
        recovered = rec_mask + rec_secret if hide_diff else rec_secret
        l_embed = torch.mean((masked - mask) ** 2)
        l_rec = torch.mean((recovered - protected) ** 2)
        l_low = torch.mean((ll_band(masked) - ll_band(mask)) ** 2)
        w = cfg.weights
        lam = self.lambda_embed
        loss = lam * w.embed * l_embed + w.recover * l_rec + lam * w.low * l_low
        with torch.no_grad():
            my, ry = y_mse(masked_q, mask), y_mse(recovered, protected)
        res = StepResult(float(loss.detach()), float(l_embed.detach()), float(l_rec.detach()), float(l_low.detach()), my, ry,
                         masked_q.detach())
        return loss, res

    def draw_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        protected, mask = self.pair_source(self.config.batch, self.config.crop, self.gen)
        protected, mask = protected.to(self.device), mask.to(self.device)
        if self.noise_gen is not None:
            noise = torch.randn(protected.shape, generator=self.noise_gen, device=self.device)
        else:
            noise = torch.randn(protected.shape, generator=self.gen).to(self.device)
        return protected, mask, noise

    def step(self) -> tuple[str, StepResult | None, str]:
        """One guarded update. Returns ``(event, result, message)``; event is step, skip or rollback."""
        t0 = time.perf_counter()
        try:
            protected, mask, noise = self.draw_batch()
            for group in self.optimizer.param_groups:
                group["lr"] = self.current_lr()
            self.net.train()
            loss, res = self.compute(protected, mask, noise)
            guard_value = res.embed + res.recover
            if not math.isfinite(res.loss) or not math.isfinite(guard_value):
                return "rollback", res, self.rollback("non-finite loss")
            if self._is_spike(guard_value):
                self.consecutive_spikes += 1
                if self.consecutive_spikes >= self.config.spike_patience:
                    return "rollback", res, self.rollback("loss spike")
                # Skip the update so one bad batch never reaches the Adam moments.
                return "skip", res, f"skipped a loss spike ({guard_value:.3g})"
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
            if not torch.isfinite(gnorm):
                self.optimizer.zero_grad(set_to_none=True)
                return "rollback", res, self.rollback("non-finite gradient")
            self.optimizer.step()
            self.update_average()
            self.consecutive_spikes = 0
            self.step_count += 1
            self.guard_history.append(guard_value)
            self._update_running(res)
            self._maybe_snapshot()
            return "step", res, ""
        finally:
            self.elapsed += time.perf_counter() - t0

    def _update_running(self, res: StepResult) -> None:
        a = 0.02
        for name, val in (("ema_masked", res.masked_y_mse), ("ema_recovered", res.recovered_y_mse)):
            old = getattr(self, name)
            setattr(self, name, val if math.isnan(old) else (1 - a) * old + a * val)
        if self.config.balance == "equalize" and self.step_count % 25 == 0 and self.step_count >= 100:
            diff = psnr_from_mse(self.ema_masked) - psnr_from_mse(self.ema_recovered) - self.config.balance_offset_db
            if diff < -0.25:
                self.lambda_embed = min(self.lambda_embed * 1.1, 100.0)
            elif diff > 0.25:
                self.lambda_embed = max(self.lambda_embed / 1.1, 0.01)

    def _maybe_snapshot(self) -> None:
        window = min(50, self.config.snapshot_every)
        if self.step_count % self.config.snapshot_every or len(self.guard_history) < window:
            return
        recent = statistics.median(list(self.guard_history)[-window:])
        if recent > 50.0 * self.best_median:
            # Slow drift to a broken state that no single step flagged.
            self.rollback("loss drifted far above its best")
            return
        self.best_median = min(self.best_median, recent)
        if recent <= 3.0 * self.best_median:
            self.take_snapshot()

    # ----- state for checkpoints ------------------------------------------------------------
    def train_state(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "elapsed": self.elapsed,
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "lambda_embed": self.lambda_embed,
            "ema_masked": self.ema_masked,
            "ema_recovered": self.ema_recovered,
            "best_median": self.best_median if math.isfinite(self.best_median) else None,
            "guard_history": list(self.guard_history),
            "average_updates": self.average_updates,
            "train_config": self.config.to_dict(),
        }

    def save(self, path: str | Path) -> Path:
        rng = {"gen": self.gen.get_state()}
        if self.noise_gen is not None:
            rng["noise_gen"] = self.noise_gen.get_state()
        return save_checkpoint(path, self.net, self.optimizer, self.train_state(), rng, average=self.average)

    def load(self, path: str | Path) -> None:
        config, model, optim, state, rng, average = load_checkpoint(path, self.device)
        if config != self.config.model:
            raise UsageError(
                f"checkpoint {path} was trained with {config.to_dict()}, not {self.config.model.to_dict()}"
            )
        load_strict(self.net, model, what=str(path))
        self.optimizer.load_state_dict(optim)
        if self.average is not None:
            # A checkpoint from a run without averaging starts the average at its weights.
            source = average if average is not None else model
            for k, v in source.items():
                self.average[k].copy_(v)
            self.average_updates = int(state.get("average_updates", 0)) if average is not None else 0
        self.step_count = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self.lr_scale = float(state["lr_scale"])
        self.rollbacks = int(state["rollbacks"])
        self.lambda_embed = float(state["lambda_embed"])
        self.ema_masked = float(state["ema_masked"])
        self.ema_recovered = float(state["ema_recovered"])
        bm = state.get("best_median")
        self.best_median = float(bm) if bm is not None else float("inf")
        self.guard_history = deque(state.get("guard_history", []), maxlen=200)
        if "gen" in rng:
            self.gen.set_state(rng["gen"])
        if self.noise_gen is not None and "noise_gen" in rng:
            self.noise_gen.set_state(rng["noise_gen"])
        self.take_snapshot()

    def progress(self, event: str, res: StepResult | None, message: str = "", sec_per_step: float = float("nan"),
                 extra: dict[str, Any] | None = None) -> TrainProgress:
        nan = float("nan")
        return TrainProgress(
            event=event, step=self.step_count, total_steps=self.config.steps, elapsed_s=self.elapsed,
            sec_per_step=sec_per_step, lr=self.current_lr(),
            loss=res.loss if res else nan, loss_embed=res.embed if res else nan,
            loss_recover=res.recover if res else nan, loss_low=res.low if res else nan,
            masked_ypsnr=psnr_from_mse(self.ema_masked) if not math.isnan(self.ema_masked) else nan,
            recovered_ypsnr=psnr_from_mse(self.ema_recovered) if not math.isnan(self.ema_recovered) else nan,
            lambda_embed=self.lambda_embed, rollbacks=self.rollbacks, message=message, extra=extra or {},
        )


def default_checkpoint_dir(out_path: str | Path) -> Path:
    """``<out stem>_checkpoints`` beside the final weights file."""
    out = Path(out_path)
    return out.with_name(out.stem + "_checkpoints")


def build_pair_source(
    config: TrainConfig,
    data_dir: str | Path | None,
    device: str | torch.device = "cpu",
    pairs_cache: str | Path | None = None,
) -> PairSource:
    """The built-in pair source named by ``config.pairs``.

    ``"swap"``: the swap pairs of :mod:`imnkit.train.swap_pairs`, read from ``pairs_cache`` when that file
    exists, else built from the photos in ``data_dir`` (and written to ``pairs_cache`` when given); they
    are moved to ``device``. ``"realistic"`` / ``"unrelated"``: crops of the photos in ``data_dir``.
    """
    cache_exists = pairs_cache is not None and Path(pairs_cache).is_file()
    if data_dir is None and not cache_exists:
        raise UsageError("train needs a data folder, a pairs cache or a pair source")
    if config.pairs != "swap":
        if pairs_cache is not None:
            raise UsageError("a pairs cache holds swap pairs: use it with pairs='swap'")
        images = load_images(data_dir, config.max_short_side, min_side=config.crop // 2)
        return make_pair_source(config.pairs, images)
    from imnkit.train.swap_pairs import SwapPairs

    if cache_exists:
        swap_pairs = SwapPairs.load(pairs_cache)
    else:
        images = load_images(data_dir, config.max_short_side, min_side=config.crop // 2)
        swap_pairs = SwapPairs.from_images(images, seed=config.seed)
        if pairs_cache is not None:
            swap_pairs.save(pairs_cache)
    return swap_pairs.to(device)


def load_init_net(config: TrainConfig, init_weights: str | Path) -> InvertibleMaskNet:
    """The weights to fine-tune from; their architecture must be ``config.model``."""
    from imnkit.train.checkpoint import load_weights

    net = load_weights(init_weights)
    if net.config != config.model:
        raise UsageError(f"{Path(init_weights).name} holds {net.config.to_dict()}, not {config.model.to_dict()}")
    return net


def resume_trainer(trainer: Trainer, resume: str | Path, ckpt_dir: Path) -> None:
    """Load a checkpoint file into ``trainer``; ``"latest"`` is the newest in ``ckpt_dir`` (none: a fresh start)."""
    path: str | Path | None = resume
    if str(resume) == "latest":
        path = latest_checkpoint(ckpt_dir)
    if path is not None:
        trainer.load(path)
        log.info("resumed from %s at step %d", path, trainer.step_count)


class TrainingRun:
    """One call of :func:`train`: the step loop and what it writes beside it (the JSON-lines log,
    checkpoints, evaluations), all reported through :class:`TrainProgress` events."""

    def __init__(self, trainer: Trainer, ckpt_dir: Path, progress_callback: ProgressCallback | None = None,
                 eval_fn: EvalFn | None = None, eval_every: int = 0):
        self.trainer = trainer
        self.config = trainer.config
        self.ckpt_dir = ckpt_dir
        self.progress_callback = progress_callback
        self.eval_fn = eval_fn
        self.eval_every = eval_every
        self.log_file = (ckpt_dir / "train_log.jsonl").open("a", encoding="utf-8")

    def close(self) -> None:
        self.log_file.close()

    def emit(self, p: TrainProgress) -> None:
        """Append the event to ``train_log.jsonl`` (NaN fields left out) and pass it to the callback."""
        rec = {k: v for k, v in asdict(p).items() if not (isinstance(v, float) and math.isnan(v))}
        self.log_file.write(json.dumps(rec) + "\n")
        self.log_file.flush()
        if self.progress_callback is not None:
            self.progress_callback(p)

    def evaluate(self) -> None:
        """Run ``eval_fn`` on the weights a checkpoint would offer (the average when one is kept)."""
        if self.eval_fn is None:
            return
        t = time.perf_counter()
        with torch.no_grad():
            result = self.eval_fn(self.trainer.averaged_net(), self.trainer.step_count)
        result = dict(result, eval_seconds=round(time.perf_counter() - t, 2))
        self.emit(self.trainer.progress("eval", None, extra=result))

    def checkpoint(self) -> None:
        """Write ``step_XXXXXXXX.safetensors`` and drop the oldest beyond ``keep_checkpoints``."""
        path = self.trainer.save(self.ckpt_dir / f"step_{self.trainer.step_count:08d}.safetensors")
        if self.config.keep_checkpoints:
            for old in list_checkpoints(self.ckpt_dir)[: -self.config.keep_checkpoints]:
                old.unlink(missing_ok=True)
        self.emit(self.trainer.progress("checkpoint", None, message=str(path)))

    def _due(self, every: int) -> bool:
        return bool(every) and self.trainer.step_count % every == 0

    def run_steps(self) -> None:
        """Step until the trainer is done: log every ``log_every`` steps, checkpoint and evaluate on schedule."""
        trainer = self.trainer
        window_t, window_n = time.perf_counter(), 0
        while not trainer.done():
            event, res, msg = trainer.step()
            if event != "step":
                self.emit(trainer.progress(event, res, msg))
                continue
            window_n += 1
            if trainer.step_count % self.config.log_every == 0:
                now = time.perf_counter()
                sec_per_step = (now - window_t) / max(window_n, 1)
                window_t, window_n = now, 0
                self.emit(trainer.progress("step", res, sec_per_step=sec_per_step))
            if self._due(self.config.checkpoint_every):
                self.checkpoint()
            if self.eval_fn is not None and self._due(self.eval_every):
                self.evaluate()
                window_t = time.perf_counter()  # eval time is not training time

    def finish(self) -> None:
        """Checkpoint the last step and evaluate it, unless the schedule just did."""
        latest = latest_checkpoint(self.ckpt_dir)
        if latest is None or latest.name != f"step_{self.trainer.step_count:08d}.safetensors":
            self.checkpoint()
        if self.eval_fn is not None and not self._due(self.eval_every):
            self.evaluate()


def run_summary(trainer: Trainer, pairs: str, init_weights: str | Path | None) -> dict[str, Any]:
    """What the final weights file records about its run (``imnkit.train_summary`` metadata)."""
    config = trainer.config

    def ypsnr(mse: float) -> float | None:
        return None if math.isnan(mse) else round(psnr_from_mse(mse), 2)

    return {
        "steps": trainer.step_count,
        "train_seconds": round(trainer.elapsed, 1),
        "crop": config.crop,
        "batch": config.batch,
        "pairs": pairs,
        "init_weights": Path(init_weights).name if init_weights is not None else None,
        "lr": config.lr,
        "weight_ema_decay": config.weight_ema_decay,
        "lambda": [config.weights.embed * trainer.lambda_embed, config.weights.recover,
                   config.weights.low * trainer.lambda_embed],
        "rollbacks": trainer.rollbacks,
        "train_masked_ypsnr": ypsnr(trainer.ema_masked),
        "train_recovered_ypsnr": ypsnr(trainer.ema_recovered),
    }


def train(
    config: TrainConfig,
    data_dir: str | Path | None,
    out_path: str | Path,
    device: str | torch.device = "cpu",
    resume: str | Path | None = None,
    progress_callback: ProgressCallback | None = None,
    *,
    pair_source: PairSource | None = None,
    checkpoint_dir: str | Path | None = None,
    eval_fn: EvalFn | None = None,
    eval_every: int = 0,
    init_weights: str | Path | None = None,
    pairs_cache: str | Path | None = None,
) -> Path:
    """Train an IMN and write the final weights (safetensors) to ``out_path``; returns that path.

    Steps: build the pair source (:func:`build_pair_source`), start from ``init_weights``
    (:func:`load_init_net`) or a checkpoint (:func:`resume_trainer`), step with checkpoints and
    evaluations (:class:`TrainingRun`), then write the averaged weights with :func:`run_summary`.

    Args:
        config: the run's :class:`TrainConfig`.
        data_dir: a folder of photos (recursive); unused when ``pair_source`` is given.
        out_path: the final weights file (replaced if it exists).
        device: torch device for the net.
        resume: a checkpoint file to continue from, or ``"latest"`` for the newest in ``checkpoint_dir``.
        progress_callback: called with a :class:`TrainProgress` every ``log_every`` steps and on events.
        pair_source: a custom ``(batch, crop, gen) -> (protected, mask)`` callable (e.g. the swap stage).
        checkpoint_dir: where ``step_XXXXXXXX.safetensors`` and ``train_log.jsonl`` go
            (default: ``<out stem>_checkpoints`` beside ``out_path``).
        eval_fn: optional ``(net, step) -> dict`` run every ``eval_every`` steps (and at the end).
        init_weights: start from these weights (same architecture) with a fresh optimizer and schedule:
            fine-tuning, e.g. on other pairs or on a GPU with bigger crops.
        pairs_cache: for ``pairs="swap"``: read the swap pairs from this file if it exists, else build
            them from ``data_dir`` and write it (see :meth:`SwapPairs.save`).
    """
    torch.set_flush_denormal(True)  # before the first parallel region, so worker threads inherit it
    if config.threads:
        torch.set_num_threads(config.threads)
    out_path = Path(out_path)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir(out_path)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if pair_source is None:
        pair_source = build_pair_source(config, data_dir, device, pairs_cache)
    elif pairs_cache is not None:
        raise UsageError("give either a pair source or a pairs cache, not both")
    net = load_init_net(config, init_weights) if init_weights is not None else None
    trainer = Trainer(config, pair_source, device, net=net)
    if resume is not None:
        resume_trainer(trainer, resume, ckpt_dir)
    run = TrainingRun(trainer, ckpt_dir, progress_callback, eval_fn, eval_every)
    try:
        run.run_steps()
        run.finish()
        pairs = config.pairs if (data_dir is not None or pairs_cache is not None) else "custom"
        summary = run_summary(trainer, pairs, init_weights)
        save_weights(trainer.averaged_net(), out_path, summary)
        run.emit(trainer.progress("done", None, message=str(out_path), extra=summary))
    finally:
        run.close()
    return out_path


__all__ = [
    "TrainConfig",
    "TrainProgress",
    "Trainer",
    "TrainingDivergedError",
    "TrainingRun",
    "build_pair_source",
    "default_checkpoint_dir",
    "load_init_net",
    "resume_trainer",
    "run_summary",
    "train",
]
