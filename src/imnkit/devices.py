"""Device names: ``auto | cpu | cuda | cuda:N``, resolved and checked before any work starts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:
    import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_device_name(name: str) -> str:
    """Validate the spelling only (no CUDA query): used when a recipe is read."""
    if not isinstance(name, str) or not _DEVICE_RE.match(name):
        raise DeviceError(f"unknown device '{name}'", hint="use auto, cpu, cuda or cuda:N")
    return name


def resolve_device(name: str) -> torch.device:
    """Turn a device name into a torch.device that exists on this machine.

    ``auto`` is CUDA device 0 when CUDA is available, else the CPU.
    """
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device '{name}' was asked for but CUDA is not available here", hint="use --device cpu or auto")
    index = int(name.split(":")[1]) if ":" in name else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"device '{name}' does not exist: this machine has {count} CUDA device(s)")
    return torch.device(f"cuda:{index}")


def plan_device(name: str) -> str | torch.device:
    """A device checked now, resolved when a stage first uses it: ``cpu`` and ``auto`` stay names
    (they cannot fail, and resolving needs torch, which stages on numpy never import); CUDA names
    are resolved at once, so an unavailable GPU fails before any work starts."""
    check_device_name(name)
    return name if name in ("cpu", "auto") else resolve_device(name)


def describe_devices() -> list[dict[str, str]]:
    """What `imnkit doctor` lists."""
    import torch

    out = [{"name": "cpu", "detail": f"{torch.get_num_threads()} threads"}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append({"name": f"cuda:{i}", "detail": f"{p.name}, {p.total_memory / 2**30:.0f} GiB"})
    return out
