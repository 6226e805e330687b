"""Check whether the shared reference fixtures can pin our nets to 1e-4, and how close we are.

    python scripts/fixture_conditioning.py [--only simswap_arcface] [--samples 8]

For each fixture in ``../shared/reference/checkpoints`` (or ``$IMNKIT_SHARED/...``) prints one
JSON line: the relative error of our forward against the fixture; how far the output moves when
the first input is nudged by a float32-rounding-sized relative 1e-7 (``drift``) and when oneDNN
is switched off (``drift_no_mkldnn``); and, over ``--samples`` nudged runs, the fixture's distance
to the nearest run and to the runs' mean next to the runs' own spread. When ``drift`` is not far
below 1e-4 the fixture cannot pin the function: a mismatch then says nothing about the
architecture, and only the ensemble numbers do (a fixture inside the runs' spread is consistent
with our architecture; a wrong architecture sits far outside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.nets import arcface, gpen, simswap
from imnkit.nets.checkpoints import load_state_dict_strict, regenerate_fixture_weights

# name -> (constructor, manifest, seed, equalized), as in shared/reference/checkpoints/README.md
FIXTURES: dict[str, tuple[Callable[[], nn.Module], str, int, bool]] = {
    "simswap_224_netG": (simswap.simswap_224, "simswap_224_netG.tsv", 7, False),
    "simswap_arcface": (arcface.arcface_ir_se101, "simswap_arcface_resnet101_ir_se.tsv", 11, False),
    "gpen_bfr_256": (gpen.gpen_bfr_256, "gpen_bfr_256.tsv", 13, True),
    "gpen_bfr_512": (gpen.gpen_bfr_512, "gpen_bfr_512.tsv", 17, True),
}


def _ref_dir() -> Path:
    env = os.environ.get("IMNKIT_SHARED")
    shared = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return shared / "reference" / "checkpoints"


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _nudge(x: torch.Tensor, seed: int) -> torch.Tensor:
    """``x`` times ``1 + 1e-7 * noise``: a change the size of float32 rounding."""
    g = torch.Generator().manual_seed(seed)
    return x * (1 + 1e-7 * torch.randn(x.shape, generator=g))


def check(name: str, samples: int) -> dict:
    """Conditioning and agreement numbers for one fixture (see the module docstring)."""
    from safetensors import safe_open

    build, manifest, seed, equalized = FIXTURES[name]
    ref_dir = _ref_dir()
    with safe_open(str(ref_dir / f"{name}.fixture.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model = build().eval()
    load_state_dict_strict(model, regenerate_fixture_weights(ref_dir / manifest, model, seed, equalized))
    inputs = [tensors[f"input.{i}"].float() for i in range(2) if f"input.{i}" in tensors]
    ref = tensors["output"]
    with torch.inference_mode():
        out = model(*inputs)
        runs = [out] + [model(_nudge(inputs[0], s), *inputs[1:]) for s in range(1, samples)]
        mkldnn = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            out_plain = model(*inputs)
        finally:
            torch.backends.mkldnn.enabled = mkldnn
    mean = torch.stack([r.double() for r in runs]).mean(0)
    spread = [_rel(r, mean) for r in runs]
    return {
        "fixture": name,
        "rel_err": _rel(out, ref),
        "drift": _rel(runs[1], out) if samples > 1 else None,
        "drift_no_mkldnn": _rel(out_plain, out),
        "fixture_to_nearest_run": min(_rel(r, ref) for r in runs),
        "fixture_to_mean": _rel(ref, mean),
        "runs_to_mean": [min(spread), max(spread)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FIXTURES), action="append")
    parser.add_argument("--samples", type=int, default=8, help="nudged runs per fixture (>= 2)")
    a = parser.parse_args()
    if not (_ref_dir() / "README.md").is_file():
        sys.exit(f"reference fixtures not found at {_ref_dir()} (set IMNKIT_SHARED)")
    for name in a.only or list(FIXTURES):
        print(json.dumps(check(name, max(a.samples, 2))), flush=True)


if __name__ == "__main__":
    main()
