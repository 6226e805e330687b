import hashlib
import pickle

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import imnkit.weights as W
from imnkit.cli import app
from imnkit.errors import UsageError, WeightsError
from imnkit.weights import WeightSpec, build, load_state_dict, load_strict, register_weights, resolve_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))


def wrapped_filter(state, model):
    """Like an upstream filter: unwrap {'model': ...} and strip 'module.'."""
    state = state.get("model", state)
    return {k.removeprefix("module."): v for k, v in state.items()}


@pytest.fixture
def registry(monkeypatch):
    W.list_weights()  # load the catalog first, then work on a copy
    monkeypatch.setattr(W, "_REGISTRY", dict(W._REGISTRY))
    monkeypatch.setattr(W, "_DIGESTS", {})
    return W._REGISTRY


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache folder built by the test (no network)."""
    import huggingface_hub.constants as C

    cache = tmp_path / "hf"
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def put(repo_id, filename, data: bytes, revision=COMMIT):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        snap = repo / "snapshots" / revision / filename
        snap.parent.mkdir(parents=True, exist_ok=True)
        snap.write_bytes(data)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        return snap

    return put


def tiny_bytes(tmp_path, wrap=False):
    state = tiny_net().state_dict()
    if wrap:
        path = tmp_path / "tiny.pth"
        torch.save({"model": {"module." + k: v for k, v in state.items()}}, path)
    else:
        path = tmp_path / "tiny.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path.read_bytes()


def spec(name, filename, data, **kw):
    return WeightSpec(name=name, arch="test_weights:tiny_net", source="hub", repo_id="imnkit-test/tiny",
                      filename=filename, revision=COMMIT, sha256=hashlib.sha256(data).hexdigest(),
                      license="test", origin_url="", description="tiny", **kw)


def test_hub_file_from_local_cache_loads_strictly_and_matches(registry, hf_cache, tmp_path):
    data = tiny_bytes(tmp_path)
    hf_cache("imnkit-test/tiny", "tiny.safetensors", data)
    register_weights(spec("test.tiny", "tiny.safetensors", data))
    model, _ = build("test.tiny")
    ref = tiny_net().eval()
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(model(x), ref(x))
    assert W.weights_digest("test.tiny") == hashlib.sha256(data).hexdigest()


def test_wrapped_pth_is_unwrapped_and_read_weights_only(registry, hf_cache, tmp_path):
    data = tiny_bytes(tmp_path, wrap=True)
    hf_cache("imnkit-test/tiny", "tiny.pth", data)
    register_weights(spec("test.tiny_pth", "tiny.pth", data, filter_fn="test_weights:wrapped_filter"))
    model, _ = build("test.tiny_pth")
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(model(x), tiny_net().eval()(x))


def test_sha256_mismatch_is_refused(registry, hf_cache, tmp_path):
    data = tiny_bytes(tmp_path)
    hf_cache("imnkit-test/tiny", "tiny.safetensors", data + b"")
    bad = spec("test.bad", "tiny.safetensors", b"other bytes")
    register_weights(bad)
    with pytest.raises(WeightsError, match="fails its sha256 check"):
        resolve_path("test.bad")


def test_offline_and_absent_names_repo_file_and_manual_fetch(registry, hf_cache):
    with pytest.raises(WeightsError) as info:
        resolve_path("gpen.bfr_512")
    err = info.value
    assert "GPEN-BFR-512.pth" in err.message and "akhaliq/GPEN-BFR-512" in err.message
    assert "HF_HUB_OFFLINE" in err.message and "hf download akhaliq/GPEN-BFR-512 GPEN-BFR-512.pth" in err.hint


def test_unknown_name_and_local_path(registry, tmp_path):
    with pytest.raises(UsageError, match="unknown weights 'nope'"):
        resolve_path("nope")
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_path(str(tmp_path / "x.safetensors"))


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_never_unpickled(tmp_path):
    p = tmp_path / "evil.pth"
    with open(p, "wb") as fh:
        pickle.dump({"w": Evil()}, fh)
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_state_dict(p)


def test_strict_load_lists_sorted_mismatches():
    model = tiny_net()
    state = dict(model.state_dict())
    state.pop("0.bias")
    state["9.weight"] = torch.zeros(1)
    state["2.weight"] = torch.zeros(3, 4, 3, 3)
    with pytest.raises(WeightsError, match=r"missing 1: \[0.bias\]; unexpected 1: \[9.weight\]; shape mismatch 1: \[2.weight\]"):
        load_strict(model, state, what="test")


def test_strict_load_is_the_one_loader_and_names_the_model():
    from imnkit.nets.checkpoints import load_state_dict_strict

    assert load_state_dict_strict is load_strict  # the reference nets' name for the same function
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v + 1 for k, v in model.state_dict().items() if k != "2.bias"}
    with pytest.raises(WeightsError, match=r"^Sequential: .*missing 1: \[2.bias\]"):
        load_strict(model, state)  # no `what`: the error names the model's class
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing was copied
    state["2.bias"] = torch.zeros(3)
    load_strict(model, state)
    assert torch.equal(model.state_dict()["0.weight"], before["0.weight"] + 1)


def test_cli_weights_list_and_verify(registry, hf_cache, tmp_path):
    data = tiny_bytes(tmp_path)
    hf_cache("imnkit-test/tiny", "tiny.safetensors", data)
    register_weights(spec("test.tiny", "tiny.safetensors", data))
    runner = CliRunner()
    listing = runner.invoke(app, ["weights", "list", "--json"])
    assert listing.exit_code == 0
    import json

    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["test.tiny"]["state"] == "cached" and rows["gpen.bfr_512"]["state"] == "missing"
    ok = runner.invoke(app, ["weights", "verify", "test.tiny"])
    assert ok.exit_code == 0 and "ok test.tiny" in ok.stdout
    missing = runner.invoke(app, ["weights", "verify", "gpen.bfr_512"])
    assert missing.exit_code == 1 and "missing gpen.bfr_512" in missing.stderr
    pull = runner.invoke(app, ["weights", "pull", "simswap.224"])
    assert pull.exit_code == 1 and "datvtn/simswap" in pull.stderr


@pytest.mark.network
def test_real_hub_download_of_gpen_512():
    """Needs the network: skipped unless IMNKIT_NETWORK_TESTS=1."""
    import os

    if os.environ.get("IMNKIT_NETWORK_TESTS") != "1":
        pytest.skip("no network here: set IMNKIT_NETWORK_TESTS=1 on a machine that reaches the Hub")
    path = resolve_path("gpen.bfr_512")
    assert path.stat().st_size == 284_085_738


def test_hub_path_loads_public_architecture_strictly_and_matches_fixture(registry, hf_cache, tmp_path, reference_dir):
    """The whole Hub path on a real architecture: a DataParallel-style GPEN-256 .pth in the HF cache
    (weights regenerated by the fixture rule), sha256-checked, unwrapped, strictly loaded, and the
    output equals the reference fixture."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from imnkit.nets.checkpoints import regenerate_fixture_weights
    from imnkit.nets.gpen import gpen_bfr_256

    state = regenerate_fixture_weights(reference_dir / "gpen_bfr_256.tsv", gpen_bfr_256(), 13, True)
    pth = tmp_path / "GPEN-BFR-256.pth"
    torch.save({"g_ema": {"module." + k: v for k, v in state.items()}}, pth)
    data = pth.read_bytes()
    catalog = W.get_spec("gpen.bfr_256")
    # The catalog entry is a Space; the test cache holds a model repo of the same file.
    register_weights(replace(catalog, name="test.gpen256", repo_id="imnkit-test/gpen", repo_type="model",
                             revision=COMMIT, sha256=hashlib.sha256(data).hexdigest()))
    hf_cache("imnkit-test/gpen", catalog.filename, data)
    model, _ = build("test.gpen256")
    fixture = load_file(str(reference_dir / "gpen_bfr_256.fixture.safetensors"))
    with torch.no_grad():
        out = model(fixture["input.0"])
    out = out[0] if isinstance(out, (tuple, list)) else out
    rel = (out - fixture["output"]).norm() / fixture["output"].norm()
    assert rel.item() < 1e-4
