"""Reference nets (SimSwap generator, SimSwap ArcFace, GPEN) against the shared numeric fixtures.

For every fixture: (a) the module's state_dict equals the manifest (keys, shapes, dtypes);
(b) the regenerated weights match ``*.weights_checksum.tsv`` and load with ``strict=True``;
(c) eval-mode float32 CPU forward reproduces the fixture output to ``rel err < 1e-4`` (or, for a
fixture so ill-conditioned that float32 rounding moves its output further, lies within that spread);
(d) the family's ``checkpoint_filter_fn`` unwraps wrapped / ``module.``-prefixed dicts and the
strict load reports sorted missing / unexpected keys on a bad dict.

The fixtures live outside the repository, in ``../shared/reference/checkpoints`` (or
``$IMNKIT_SHARED/reference/checkpoints``); without them the fixture tests are skipped (the
checkpoint-reading and functional-core tests still run).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

from imnkit.errors import WeightsError
from imnkit.nets import arcface, gpen, simswap
from imnkit.nets.checkpoints import (
    arcface_checkpoint_filter_fn,
    gpen_checkpoint_filter_fn,
    load_pth_state_dict,
    load_state_dict_strict,
    read_manifest,
    regenerate_fixture_weights,
    simswap_checkpoint_filter_fn,
)


def _shared_dir() -> Path:
    env = os.environ.get("IMNKIT_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


REF = _shared_dir() / "reference" / "checkpoints"
needs_ref = pytest.mark.skipif(
    not (REF / "README.md").is_file(),
    reason=f"reference fixtures not found at {REF} (set IMNKIT_SHARED to the shared folder)",
)

REL_TOL = 1e-4


@dataclass(frozen=True)
class Case:
    name: str  # fixture stem
    build: Callable[[], nn.Module]
    manifest: str
    checksum: str
    seed: int
    equalized: bool
    filter_fn: Callable
    wrapper: str  # a wrapper key the family's checkpoints are known to use


CASES = [
    Case("simswap_224_netG", simswap.simswap_224, "simswap_224_netG.tsv",
         "simswap_224_netG.weights_checksum.tsv", 7, False, simswap_checkpoint_filter_fn, "state_dict"),
    Case("simswap_arcface", arcface.arcface_ir_se101, "simswap_arcface_resnet101_ir_se.tsv",
         "simswap_arcface.weights_checksum.tsv", 11, False, arcface_checkpoint_filter_fn, "model"),
    Case("gpen_bfr_256", gpen.gpen_bfr_256, "gpen_bfr_256.tsv",
         "gpen_bfr_256.weights_checksum.tsv", 13, True, gpen_checkpoint_filter_fn, "g_ema"),
    Case("gpen_bfr_512", gpen.gpen_bfr_512, "gpen_bfr_512.tsv",
         "gpen_bfr_512.weights_checksum.tsv", 17, True, gpen_checkpoint_filter_fn, "g_ema"),
]
_SLOW = {"gpen_bfr_512"}  # ~3-5 s forward + ~71 M weights to regenerate on 2 cores


def _params(cases):
    return [
        pytest.param(c, id=c.name, marks=[needs_ref] + ([pytest.mark.slow] if c.name in _SLOW else []))
        for c in cases
    ]


def _signature(sd) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in sd.items()}


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


# ----------------------------------------------------------------------------------------
# (a) state_dict keys / shapes / dtypes == manifest (also the key-only SimSwap variants)
# ----------------------------------------------------------------------------------------

MANIFEST_ONLY = [
    ("simswap_224_netG.tsv", simswap.simswap_224),
    ("simswap_512_netG.tsv", simswap.simswap_512),
    ("simswap_unofficial512_fix_deep_netG.tsv", simswap.simswap_512_fix_deep),
    ("simswap_arcface_resnet101_ir_se.tsv", arcface.arcface_ir_se101),
    ("gpen_bfr_256.tsv", gpen.gpen_bfr_256),
    ("gpen_bfr_512.tsv", gpen.gpen_bfr_512),
]


@needs_ref
@pytest.mark.parametrize("manifest, build", MANIFEST_ONLY, ids=[m for m, _ in MANIFEST_ONLY])
def test_state_dict_matches_manifest(manifest, build):
    with torch.device("meta"):  # shapes and dtypes only, no allocation
        model = build()
    entries = read_manifest(REF / manifest)
    expected = {k: (s, d) for k, s, d in entries}
    assert len(expected) == len(entries), "duplicate keys in manifest"
    got = _signature(model.state_dict())
    assert sorted(set(expected) - set(got)) == [], "missing from module"
    assert sorted(set(got) - set(expected)) == [], "not in manifest"
    assert got == expected
    # fixed FIR kernels must be persistent buffers, not parameters
    kernels = {k for k in expected if k.endswith(".kernel")}
    assert kernels.isdisjoint(dict(model.named_parameters()))


# ----------------------------------------------------------------------------------------
# per-fixture: regenerate once (module-scoped), then (b) (c) (d)
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=_params(CASES))
def case(request) -> Case:
    return request.param


@pytest.fixture(scope="module")
def fixture_tensors(case):
    from safetensors import safe_open

    with safe_open(str(REF / f"{case.name}.fixture.safetensors"), "pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, tensors


@pytest.fixture(scope="module")
def regenerated(case):
    """(model, weights): model in eval mode with the regenerated weights loaded strictly."""
    model = case.build().eval()
    weights = regenerate_fixture_weights(REF / case.manifest, model, case.seed, case.equalized)
    load_state_dict_strict(model, weights)
    yield model, weights
    del model, weights


def test_fixture_metadata_matches_table(case, fixture_tensors):
    meta, _ = fixture_tensors
    assert int(meta["seed"]) == case.seed
    assert meta["equalized"].lower() in ("true", "false", "yes", "no")
    assert (meta["equalized"].lower() in ("true", "yes")) == case.equalized


def test_regenerated_weights_checksum(case, regenerated):
    model, weights = regenerated
    with open(REF / case.checksum, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["key"] for r in rows] == [k for k, _, _ in read_manifest(REF / case.manifest)]
    bad = []
    for r in rows:
        t = weights[r["key"]].double()
        s_ref, a_ref = float(r["sum"]), float(r["abs_sum"])
        tol = 1e-7 * max(a_ref, 1.0)
        if abs(t.sum().item() - s_ref) > tol or abs(t.abs().sum().item() - a_ref) > tol:
            bad.append(r["key"])
    assert bad == [], f"{len(bad)} regenerated tensors differ from the checksums, e.g. {bad[:5]}"
    # the strict load really copied them in
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in weights.items())


def _fixture_inputs(tensors: dict) -> list[torch.Tensor]:
    return [tensors[f"input.{i}"].float() for i in range(2) if f"input.{i}" in tensors]


@pytest.fixture(scope="module")
def forward_out(case, regenerated, fixture_tensors) -> torch.Tensor:
    """Eval-mode float32 forward of the regenerated model on the fixture inputs (computed once)."""
    model, _ = regenerated
    _, tensors = fixture_tensors
    assert not model.training
    with torch.inference_mode():
        return model(*_fixture_inputs(tensors))


def _rounding_drift(model, inputs: list[torch.Tensor], out: torch.Tensor, trials: int = 3) -> float:
    """The largest relative output change from relative input nudges of 1e-7 (float32 rounding size)."""
    g = torch.Generator().manual_seed(0)
    drifts = []
    with torch.inference_mode():
        for _ in range(trials):
            nudged = [inputs[0] * (1 + 1e-7 * torch.randn(inputs[0].shape, generator=g)), *inputs[1:]]
            drifts.append(_rel_err(model(*nudged), out))
    return max(drifts)


def test_fixture_forward(case, regenerated, forward_out, fixture_tensors):
    """The forward reproduces the fixture to REL_TOL, when the fixture can pin the function that far.

    A fixture pins the function to REL_TOL only if float32 rounding cannot move the output that far.
    When rounding-sized input nudges move it by more (the shared simswap_arcface fixture: its
    regenerated weights make activations grow ~1.3x per block and the SE gates saturate, so
    rounding is amplified ~1e6; scripts/fixture_conditioning.py measures it), the forward can only be
    checked to fall within the spread rounding itself produces; architecture variants land far outside
    it (no final PReLU 1.74, SE with ReLU 1.35, stride on conv1 1.31, against a spread of ~0.2-0.8).
    """
    _, tensors = fixture_tensors
    ref = tensors["output"]
    out = forward_out
    assert out.dtype == torch.float32 and out.shape == ref.shape
    err = _rel_err(out, ref)
    if err < REL_TOL:
        return
    drift = _rounding_drift(regenerated[0], _fixture_inputs(tensors), out)
    assert drift >= REL_TOL / 10, f"{case.name}: relative error {err:.3e} >= {REL_TOL:g} (fixture well conditioned: drift {drift:.1e})"
    assert err < 2 * drift, f"{case.name}: relative error {err:.3e} is outside the rounding spread ({drift:.2e})"


def test_filter_fn_unwraps_and_strips(case, regenerated):
    model, weights = regenerated
    # a DataParallel-saved dict, wrapped like the family's training checkpoints
    wrapped = {case.wrapper: {f"module.{k}": v for k, v in weights.items()}, "epoch": 3}
    sd = case.filter_fn(wrapped, model)
    assert set(sd) == set(weights)
    load_state_dict_strict(model, sd)
    # already native: returned unchanged
    assert case.filter_fn(dict(weights)).keys() == weights.keys()


def test_strict_load_reports_sorted_keys(case, regenerated):
    model, weights = regenerated
    keys = list(weights)
    drop = [keys[-1], keys[0], keys[len(keys) // 2]]
    bad = {k: v for k, v in weights.items() if k not in drop}
    bad["zz.extra.weight"] = torch.zeros(1)
    bad["aa.extra.bias"] = torch.zeros(1)
    before = {k: v.clone() for k, v in list(model.state_dict().items())[:3]}
    with pytest.raises(WeightsError) as exc:
        load_state_dict_strict(model, bad)
    msg = str(exc.value)
    assert f"missing 3: [{', '.join(sorted(drop))}]" in msg
    assert "unexpected 2: [aa.extra.bias, zz.extra.weight]" in msg
    # nothing was copied
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in before.items())
    # a shape mismatch is named too
    k0 = next(k for k, v in weights.items() if v.ndim >= 1 and v.dtype.is_floating_point)
    wrong = dict(weights)
    wrong[k0] = torch.zeros(weights[k0].numel() + 1)
    with pytest.raises(WeightsError, match=rf"shape mismatch 1: \[{k0}\]"):
        load_state_dict_strict(model, wrong)


# ----------------------------------------------------------------------------------------
# checkpoint reading: weights_only only, clear errors
# ----------------------------------------------------------------------------------------


def test_load_pth_state_dict_plain_and_wrapped(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    p = tmp_path / "ckpt.pth"
    torch.save({"g_ema": {f"module.{k}": v for k, v in net.state_dict().items()}, "iter": 10}, p)
    sd = gpen_checkpoint_filter_fn(load_pth_state_dict(p))
    load_state_dict_strict(net, sd)


def test_load_pth_state_dict_refuses_pickled_module(tmp_path):
    p = tmp_path / "whole_module.tar"
    torch.save(nn.Linear(2, 2), p)  # like SimSwap's arcface_checkpoint.tar
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_pth_state_dict(p)
    with pytest.raises(WeightsError, match="not found"):
        load_pth_state_dict(tmp_path / "absent.pth")


def test_filter_fn_refuses_unknown_layout():
    with pytest.raises(WeightsError, match="unrecognised simswap checkpoint layout"):
        simswap_checkpoint_filter_fn({"weights": {"a": torch.zeros(1)}, "epoch": 1})


# ----------------------------------------------------------------------------------------
# GPEN functional core (pure torch upfirdn2d / fused leaky relu)
# ----------------------------------------------------------------------------------------


def _upfirdn2d_direct(x, k, up, down, pad):
    """Definition by explicit sums (slow, tiny inputs only)."""
    b, c, h, w = x.shape
    z = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    z[:, :, ::up, ::up] = x
    p0, p1 = pad
    z = torch.nn.functional.pad(z, [p0, p1, p0, p1])
    kh, kw = k.shape
    oh = (z.shape[2] - kh) // down + 1
    ow = (z.shape[3] - kw) // down + 1
    out = torch.zeros(b, c, oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            win = z[:, :, i * down : i * down + kh, j * down : j * down + kw]
            out[:, :, i, j] = (win * torch.flip(k, [0, 1])).sum((2, 3))
    return out


@pytest.mark.parametrize("up, down, pad", [(1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (2, 2)), (2, 1, (1, 1)), (1, 1, (-1, 0))])
def test_upfirdn2d_matches_definition(up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64)
    k = torch.rand(4, 4, generator=g, dtype=torch.float64)  # asymmetric: checks the flip
    assert torch.allclose(gpen.upfirdn2d(x, k, up, down, pad), _upfirdn2d_direct(x, k, up, down, pad), atol=1e-12)


def test_upfirdn2d_gradcheck_and_fused_lrelu():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = gpen.make_kernel().double()
    assert torch.autograd.gradcheck(lambda t: gpen.upfirdn2d(t, k, up=2, pad=(2, 1)), (x,))
    b = torch.randn(2, generator=g, dtype=torch.float64)
    y = gpen.fused_leaky_relu(x, b)
    z = x + b.view(1, -1, 1, 1)
    assert torch.allclose(y, math.sqrt(2) * torch.where(z >= 0, z, 0.2 * z))


@needs_ref
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpen_256_cuda_matches_fixture():
    c = CASES[2]
    model = c.build().eval()
    load_state_dict_strict(model, regenerate_fixture_weights(REF / c.manifest, model, c.seed, c.equalized))
    from safetensors.torch import load_file

    fx = load_file(str(REF / f"{c.name}.fixture.safetensors"))
    prev = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            out = model.cuda()(fx["input.0"].cuda()).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev
    assert _rel_err(out, fx["output"]) < REL_TOL
