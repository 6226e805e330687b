"""The key options of `imnkit run` / `imnkit extract`, `imnkit keygen`, and what never leaks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imnkit.bundle import load_bundle
from imnkit.cli import app
from imnkit.protect.crypto import AUTH_FAILED
from imnkit.imageio import load_image

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "astronaut.jpg"
SECRET = "a long passphrase nobody guesses"


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def masked_with_passphrase(tmp_path_factory):
    out = tmp_path_factory.mktemp("pp")
    pp = out / "pp.txt"
    pp.write_text(SECRET + "\n")
    r = invoke("run", REPO / "recipes" / "mask.toml", EXAMPLE, "-o", out, "--passphrase-file", pp, "--json", "--preview")
    assert r.exit_code == 0, r.stderr
    assert (out / "astronaut.PRIVATE-preview.png").is_file()  # the contact sheet unseals with the run's passphrase
    assert SECRET not in r.stdout + r.stderr
    return out, json.loads(r.stdout.splitlines()[-1])


def test_run_json_reports_codec_and_no_secret(masked_with_passphrase):
    out, row = masked_with_passphrase
    region = row["report"]["embed"]
    assert region["method"] == "sealed" and region["regions"] == 1 and region["codec"] in ("avif", "webp-lossless")
    assert 0 < region["bpp"] <= 4.7 and 1 <= region["quality"] <= 100
    aux = out / "astronaut.aux.safetensors"
    assert (aux.stat().st_mode & 0o777) == 0o600  # the aux is a key
    bundle = load_bundle(aux)
    assert "aux.key" not in bundle.tensors and bundle.meta["aux.header"]["key"]["wrap"] == "passphrase"
    shown = invoke("inspect", aux, "--json").stdout
    assert SECRET not in shown and np.asarray(bundle.tensors["aux.key_wrapped"]).tobytes().hex() not in shown


def test_extract_needs_the_passphrase(masked_with_passphrase, tmp_path):
    out, _ = masked_with_passphrase
    masked, aux, rec = out / "astronaut.masked.png", out / "astronaut.aux.safetensors", tmp_path / "r.png"
    r = invoke("extract", masked, "--aux", aux, "-o", rec, env={"IMNKIT_PASSPHRASE": None})
    assert r.exit_code == 2 and "passphrase" in r.stderr and not rec.exists()  # no terminal to ask on
    r = invoke("extract", masked, "--aux", aux, "-o", rec, env={"IMNKIT_PASSPHRASE": "not it at all"})
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not rec.exists()
    assert "not it at all" not in r.stderr + r.stdout
    r = invoke("extract", masked, "--aux", aux, "-o", rec, env={"IMNKIT_PASSPHRASE": SECRET})
    assert r.exit_code == 0, r.stderr
    assert SECRET not in r.stderr + r.stdout
    protected, recovered = load_image(EXAMPLE), load_image(rec)
    y0, x0, y1, x1 = load_bundle(aux).tensors["aux.regions"][0].tolist()
    keep = np.ones(protected.shape[:2], bool)
    keep[y0:y1, x0:x1] = False
    assert np.array_equal(recovered[keep], protected[keep])


def test_edited_masked_pixels_are_refused_even_with_force(masked_with_passphrase, tmp_path):
    out, _ = masked_with_passphrase
    aux = out / "astronaut.aux.safetensors"
    edited = load_image(out / "astronaut.masked.png")
    y0, x0, y1, x1 = load_bundle(aux).tensors["aux.regions"][0].tolist()
    edited[y0:y1, x0:x1] ^= 1
    path = tmp_path / "edited.png"
    Image.fromarray(edited).save(path)
    r = invoke("extract", path, "--aux", aux, "-o", tmp_path / "r.png", env={"IMNKIT_PASSPHRASE": SECRET})
    assert r.exit_code == 4 and "--force" in r.stderr  # the consistency check speaks first
    r = invoke("extract", path, "--aux", aux, "-o", tmp_path / "r.png", "--force", env={"IMNKIT_PASSPHRASE": SECRET})
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not (tmp_path / "r.png").exists()


def test_keygen_key_file_round_trip(tmp_path):
    key = tmp_path / "org.key"
    r = invoke("keygen", key)
    assert r.exit_code == 0 and (key.stat().st_mode & 0o777) == 0o600 and len(key.read_bytes()) == 32
    assert invoke("keygen", key).exit_code == 1  # never overwrites a key by accident
    r = invoke("run", REPO / "recipes" / "mask.toml", EXAMPLE, "-o", tmp_path, "--key-file", key,
               "--set", "embed.method=detached")
    assert r.exit_code == 0, r.stderr
    masked, aux = tmp_path / "astronaut.masked.png", tmp_path / "astronaut.aux.safetensors"
    assert invoke("extract", masked, "--aux", aux, "-o", tmp_path / "a.png").exit_code == 2  # key file needed
    other = tmp_path / "other.key"
    invoke("keygen", other)
    assert invoke("extract", masked, "--aux", aux, "-o", tmp_path / "b.png", "--key-file", other).exit_code == 4
    r = invoke("extract", masked, "--aux", aux, "-o", tmp_path / "c.png", "--key-file", key)
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(load_image(tmp_path / "c.png"), load_image(EXAMPLE))  # detached: exact
    # a JPEG q85 copy of the masked photo still gives the exact face regions back
    jpeg = tmp_path / "shared-copy.jpg"
    Image.open(masked).save(jpeg, quality=85)
    r = invoke("extract", jpeg, "--aux", aux, "--key-file", key)
    assert r.exit_code == 0, r.stderr
    recovered, protected = load_image(tmp_path / "shared-copy.recovered.png"), load_image(EXAMPLE)
    for y0, x0, y1, x1 in load_bundle(aux).tensors["aux.regions"].tolist():
        assert np.array_equal(recovered[y0:y1, x0:x1], protected[y0:y1, x0:x1])


def test_only_one_key_option_and_no_prompt_without_terminal(tmp_path):
    pp = tmp_path / "pp"
    pp.write_text("x" * 20)
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path, "--passphrase-file", pp, "--key-file", pp)
    assert r.exit_code == 2 and "only one" in r.stderr
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path, "--passphrase")
    assert r.exit_code == 2 and "terminal" in r.stderr
    assert not list(tmp_path.glob("astronaut.*"))


def test_inn_says_it_has_no_key(tmp_path):
    r = invoke("run", "mask-inn", EXAMPLE, "-o", tmp_path)
    assert r.exit_code == 0 and "anyone with imnkit" in r.stderr
    r = invoke("extract", tmp_path / "astronaut.masked.png", "--aux", tmp_path / "astronaut.aux.safetensors")
    assert r.exit_code == 0 and "anyone with imnkit" in r.stderr
