"""Safetensors checkpoints (model + Adam state + RNG, JSON metadata, no pickle) and final weights files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from imnkit.errors import WeightsError
from imnkit.imageio import atomic_output
from imnkit.nets.imn import ImnConfig, InvertibleMaskNet
from imnkit.weights import load_strict

FORMAT_VERSION = "1"
CKPT_KIND = "imn-train-checkpoint"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file through :func:`imnkit.imageio.atomic_output` (temporary file, then
    rename), so a crash never leaves a half-written checkpoint; an existing file is replaced."""
    with atomic_output(path, overwrite=True) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def save_weights(net: InvertibleMaskNet, path: str | Path, summary: dict[str, Any] | None = None) -> Path:
    """Final weights: the model's state dict with metadata ``imnkit.arch``/``imnkit.config``/summary."""
    path = Path(path)
    meta = {
        "imnkit.arch": "imn",
        "imnkit.format_version": FORMAT_VERSION,
        "imnkit.config": net.config.to_json(),
        "imnkit.train_summary": json.dumps(summary or {}, sort_keys=True),
    }
    _atomic_save(dict(net.state_dict()), path, meta)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> InvertibleMaskNet:
    """Build an :class:`InvertibleMaskNet` from a weights file (or a training checkpoint), strictly."""
    path = Path(path)
    try:
        meta = read_metadata(path)
        tensors = load_file(str(path), device=str(device))
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {type(exc).__name__}") from exc
    if meta.get("imnkit.arch") != "imn":
        raise WeightsError(f"{path} is not an IMN weights file (imnkit.arch={meta.get('imnkit.arch')!r})")
    try:
        config = ImnConfig.from_json(meta["imnkit.config"])
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"{path} has no valid imnkit.config metadata") from exc
    if meta.get("imnkit.kind") == CKPT_KIND:
        # A checkpoint offers its weight average for inference when the run kept one.
        prefix = "average." if any(k.startswith("average.") for k in tensors) else "model."
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    net = InvertibleMaskNet(config).to(device)
    load_strict(net, tensors, what=str(path))
    return net.eval()


def save_checkpoint(
    path: str | Path,
    net: InvertibleMaskNet,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rng: dict[str, torch.Tensor],
    average: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Model, weight average, optimizer tensors and RNG states as tensors; step/config/scalars as JSON metadata."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in net.state_dict().items()}
    for k, v in (average or {}).items():
        tensors[f"average.{k}"] = v
    opt = optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.state.{idx}.{key}"] = t
    for name, t in rng.items():
        tensors[f"rng.{name}"] = t
    meta = {
        "imnkit.arch": "imn",
        "imnkit.kind": CKPT_KIND,
        "imnkit.format_version": FORMAT_VERSION,
        "imnkit.config": net.config.to_json(),
        "imnkit.optim_param_groups": json.dumps(opt["param_groups"]),
        "imnkit.train_state": json.dumps(state, sort_keys=True),
    }
    _atomic_save(tensors, path, meta)
    return path


class Checkpoint(NamedTuple):
    config: ImnConfig
    model: dict[str, torch.Tensor]
    optim: dict[str, Any]  # an optimizer state_dict
    state: dict[str, Any]  # the trainer's scalars (step, elapsed, ...)
    rng: dict[str, torch.Tensor]
    average: dict[str, torch.Tensor] | None  # the weight average, when the run kept one


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a training checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    try:
        meta = read_metadata(path)
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise WeightsError(f"cannot read checkpoint {path}: {type(exc).__name__}") from exc
    if meta.get("imnkit.kind") != CKPT_KIND:
        raise WeightsError(f"{path} is not an imnkit training checkpoint")
    config = ImnConfig.from_json(meta["imnkit.config"])
    model = {k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model.")}
    average = {k[8:]: v.to(device) for k, v in tensors.items() if k.startswith("average.")} or None
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim.state."):
            idx, key = k[len("optim.state."):].split(".", 1)
            # Adam keeps 'step' on the CPU; moments live with the parameters.
            opt_state.setdefault(int(idx), {})[key] = v if key == "step" else v.to(device)
    optim = {"state": opt_state, "param_groups": json.loads(meta["imnkit.optim_param_groups"])}
    train_state = json.loads(meta["imnkit.train_state"])
    return Checkpoint(config, model, optim, train_state, rng, average)


def average_weights(paths: list[str | Path]) -> InvertibleMaskNet:
    """The uniform average of several weights files or checkpoints of one architecture.

    Meant for late checkpoints of one run (one basin of the loss), where averaging removes the
    step-to-step noise of single checkpoints; it is not a way to merge unrelated runs.
    """
    if not paths:
        raise WeightsError("average_weights needs at least one file")
    nets = [load_weights(p) for p in paths]
    config = nets[0].config
    for p, n in zip(paths, nets):
        if n.config != config:
            raise WeightsError(f"{Path(p).name} holds {n.config.to_dict()}, not {config.to_dict()}")
    states = [n.state_dict() for n in nets]
    mean = {k: (sum(s[k].double() for s in states) / len(states)).to(states[0][k].dtype) for k in states[0]}
    out = InvertibleMaskNet(config)
    out.load_state_dict(mean)
    return out.eval()


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Checkpoints ``step_XXXXXXXX.safetensors`` in ``ckpt_dir``, oldest first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    return sorted(d.glob("step_*.safetensors"))


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None
