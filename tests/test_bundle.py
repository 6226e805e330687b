import json

import pytest
import torch
from typer.testing import CliRunner

from imnkit import bundle as bundle_mod
from imnkit.bundle import Bundle, describe, load_bundle
from imnkit.cli import app
from imnkit.errors import BundleError, OutputError


def make_bundle():
    return Bundle(
        tensors={"image.protected": torch.arange(24, dtype=torch.uint8).reshape(2, 4, 3),
                 "faces.landmarks": torch.rand(2, 5, 2)},
        meta={"source.name": "x.jpg", "embed.seed": 7},
        history=[{"stage": "align", "params": {"faces": "all"}, "weights": {}, "device": "cpu", "seconds": 0.1,
                  "imnkit_version": "0.1.0"}],
    )


def test_round_trip_keeps_tensors_meta_and_history(tmp_path):
    b = make_bundle()
    path = b.save(tmp_path / "b.safetensors")
    back = load_bundle(path)
    assert set(back.tensors) == set(b.tensors)
    for k in b.tensors:
        assert torch.equal(back.tensors[k], b.tensors[k]) and back.tensors[k].dtype == b.tensors[k].dtype
    assert back.meta == b.meta and back.history == b.history
    info = describe(path)
    assert info["format"] == "1" and info["tensors"]["faces.landmarks"] == {"dtype": "F32", "shape": [2, 5, 2]}


def test_missing_key_names_what_is_there():
    with pytest.raises(BundleError, match=r"stage 'embed' needs key 'mask.image'.*it has: faces.landmarks, image.protected"):
        make_bundle().require("mask.image", stage="embed")


def test_missing_file(tmp_path):
    with pytest.raises(BundleError, match="no such file"):
        load_bundle(tmp_path / "nope.safetensors")


def test_not_safetensors(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(BundleError, match="not a safetensors bundle"):
        load_bundle(p)
    p.write_bytes(b"abc")
    with pytest.raises(BundleError, match="not a safetensors bundle"):
        load_bundle(p)


def test_truncated(tmp_path):
    p = make_bundle().save(tmp_path / "b.safetensors")
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(p)
    p.write_bytes(data[:20])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(p)


def test_newer_format_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_mod, "FORMAT_VERSION", 99)
    p = make_bundle().save(tmp_path / "new.safetensors")
    monkeypatch.setattr(bundle_mod, "FORMAT_VERSION", 1)
    with pytest.raises(BundleError, match="format 99 is newer"):
        load_bundle(p)


def test_from_bytes_inverts_to_bytes():
    b = make_bundle()
    back = Bundle.from_bytes(b.to_bytes(), source="x.jpg")
    assert set(back.tensors) == set(b.tensors)
    for k in b.tensors:
        assert torch.equal(back.tensors[k], b.tensors[k]) and back.tensors[k].dtype == b.tensors[k].dtype
    assert back.meta == b.meta and back.history == b.history and back.source == "x.jpg"
    assert back.to_bytes() == b.to_bytes()


def test_from_bytes_refuses_bad_bytes(monkeypatch):
    data = make_bundle().to_bytes()
    for bad in (b"abc", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, data[:20]):
        with pytest.raises(BundleError, match="x.jpg: not a safetensors bundle"):
            Bundle.from_bytes(bad, source="x.jpg")
    with pytest.raises(BundleError, match="corrupt"):
        Bundle.from_bytes(data[:-10])
    monkeypatch.setattr(bundle_mod, "FORMAT_VERSION", 99)
    newer = make_bundle().to_bytes()
    monkeypatch.setattr(bundle_mod, "FORMAT_VERSION", 1)
    with pytest.raises(BundleError, match="format 99 is newer"):
        Bundle.from_bytes(newer)


def test_save_is_atomic_and_refuses_to_overwrite(tmp_path):
    p = make_bundle().save(tmp_path / "b.safetensors")
    with pytest.raises(OutputError, match="already exists"):
        make_bundle().save(p)
    assert [f.name for f in tmp_path.iterdir()] == ["b.safetensors"]


@pytest.mark.parametrize("make, code, message", [
    (lambda d: d / "absent.safetensors", 1, "no such file"),
    (lambda d: (d / "t.safetensors").write_text("not a bundle") and d / "t.safetensors", 1, "not a safetensors bundle"),
])
def test_inspect_errors(tmp_path, make, code, message):
    path = make(tmp_path)
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == code and message in result.stderr


def test_inspect_json_shows_keys_and_history(tmp_path):
    p = make_bundle().save(tmp_path / "b.safetensors")
    result = CliRunner().invoke(app, ["inspect", str(p), "--json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["tensors"]["image.protected"]["shape"] == [2, 4, 3]
    assert info["history"][0]["stage"] == "align" and info["meta"]["embed.seed"] == 7
    text = CliRunner().invoke(app, ["inspect", str(p)])
    assert "image.protected" in text.stdout and "align" in text.stdout
