"""#26 items 5-8: substituted auxes, one failure message (with a fuzz test), the KDF cost an aux may ask
for, and weak passphrases from every source (docs/security.md, docs/errors.md)."""

from __future__ import annotations

import json
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import imnkit
from imnkit.bundle import Bundle
from imnkit.cli import app
from imnkit.imageio import encode_png
from imnkit.protect import crypto, keyed
from imnkit.protect.crypto import AUTH_FAILED, AuthenticationError
from imnkit.protect.keys import KeySource, WeakPassphraseWarning
from imnkit.stage import StageContext, get_stage, run_stage
from imnkit.train import save_weights

REPO = Path(__file__).resolve().parents[1]
BOXES = [(8, 8, 40, 56), (48, 64, 88, 120)]
KEY = bytes(range(32))
PASSPHRASE = "a long passphrase nobody guesses"


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    protected = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    mask = protected.copy()
    for y0, x0, y1, x1 in BOXES:
        mask[y0:y1, x0:x1] = 255 - protected[y0:y1, x0:x1]
    return protected, mask


def write(tmp_path: Path, result, name: str) -> tuple[Path, Path]:
    masked, aux = tmp_path / f"{name}.masked.png", tmp_path / f"{name}.aux.safetensors"
    masked.write_bytes(encode_png(result.masked))
    aux.write_bytes(result.aux.to_bytes())
    return masked, aux


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "team.key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    return path


# -- item 5: a substituted aux ------------------------------------------------------------------------
def test_a_bare_aux_is_refused_when_a_key_file_or_passphrase_is_given(tmp_path, key_file):
    protected, mask = pair()
    bare = keyed.hide(protected, mask, BOXES, method="sealed")  # what an attacker substitutes: no lock
    masked, aux = write(tmp_path, bare, "swapped")
    out = tmp_path / "r.png"
    for option in (["--key-file", key_file], ["--passphrase-file", _pp(tmp_path)]):
        r = invoke("extract", masked, "--aux", aux, "-o", out, *option)
        assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists(), r.stderr
    assert invoke("extract", masked, "--aux", aux, "-o", out).exit_code == 0  # asked for nothing: a bare aux opens
    # a key-file aux given a passphrase (and the other way round) is refused the same way
    locked = keyed.hide(protected, mask, BOXES, method="detached", source=KeySource(key_file=KEY))
    masked, aux = write(tmp_path, locked, "locked")
    out.unlink()
    r = invoke("extract", masked, "--aux", aux, "-o", out, "--passphrase-file", _pp(tmp_path))
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists()


def _pp(tmp_path: Path) -> Path:
    path = tmp_path / "pp.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


def test_an_inn_aux_needs_allow_unkeyed_when_a_key_is_given(tmp_path, key_file):
    from imnkit.nets.imn import InvertibleMaskNet

    torch.manual_seed(0)
    weights = str(save_weights(InvertibleMaskNet(num_blocks=2, growth=8), tmp_path / "w.safetensors"))
    protected, mask = pair(1)
    b = Bundle(tensors={"image.protected": torch.from_numpy(protected), "mask.image": torch.from_numpy(mask),
                        "swap.regions": torch.tensor(BOXES[:1], dtype=torch.int64)})
    stage = get_stage("embed")
    run_stage(stage, b, stage.resolve_params({"method": "inn", "weights": weights}), StageContext(device=torch.device("cpu")))
    masked, aux = tmp_path / "inn.masked.png", tmp_path / "inn.aux.safetensors"
    masked.write_bytes(encode_png(np.asarray(b.tensors["image.masked"])))
    b.subset("aux.").save(aux)
    out = tmp_path / "r.png"
    r = invoke("extract", masked, "--aux", aux, "-o", out, "--key-file", key_file, "--weights", weights)
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists()
    r = invoke("extract", masked, "--aux", aux, "-o", out, "--key-file", key_file, "--weights", weights, "--allow-unkeyed")
    assert r.exit_code == 0 and "no key" in r.stderr and out.exists()


# -- item 6: one failure message, never a traceback ------------------------------------------------------
def _mutations(rng: random.Random):
    """Replacement values of every JSON type, odd values, and a marker for 'remove the key'."""
    return [None, "x", "", 0, -1, 2**63, 1.5, float("inf") if False else 1e308, [], [1, 2], {}, {"a": 1}, True,
            "00" * 12, [[0, 0, 0, 0]], [0, 0, 10**9, 10**9], "argon2id", {"name": "argon2id"}, rng.random(), "REMOVE"]


def _paths(node, prefix=()):
    """Every path into a JSON tree (dict keys and list indices)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:4]):
            yield from _paths(v, prefix + (i,))


def _mutated(header: dict, path: tuple, value):
    header = json.loads(json.dumps(header))
    if not path:
        return value if value != "REMOVE" else {}
    node = header
    for step in path[:-1]:
        node = node[step]
    if value == "REMOVE":
        if isinstance(node, dict):
            del node[path[-1]]
        else:
            node.pop(path[-1])
    else:
        node[path[-1]] = value
    return header


def _check_exit(r, what: str = "") -> None:
    assert r.exit_code in (2, 4), (what, r.exit_code, r.stderr[-300:], repr(r.exception))
    assert isinstance(r.exception, SystemExit), repr(r.exception)  # no traceback
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr


@pytest.mark.parametrize("method", ["sealed", "detached"])
def test_fuzzed_headers_and_aux_bytes_fail_with_exit_4_or_2(tmp_path, key_file, method):
    """1,000 mutations in all (500 per method): header fields (types, values, missing keys), the aux's
    meta entries, and the aux file's bytes."""
    protected, mask = pair(2)
    result = keyed.hide(protected, mask, BOXES, method=method, source=KeySource(key_file=KEY))
    masked, aux_path = write(tmp_path, result, method)
    good = aux_path.read_bytes()
    rng = random.Random(7 if method == "sealed" else 8)
    header = result.aux.meta["aux.header"]
    paths = list(_paths(header))
    values = _mutations(rng)
    out = tmp_path / "r.png"
    codes = {2: 0, 4: 0}
    for i in range(500):
        kind = i % 4
        if kind < 2:  # a header field: written back as imnkit writes bundles (so it reaches the checks)
            where, value = rng.choice(paths), rng.choice(values)
            what = f"header {where} = {value!r}"
            changed = _mutated(header, where, value)
            meta = {**result.aux.meta, "aux.header": changed}
            try:
                raw = Bundle(tensors=result.aux.tensors, meta=meta).to_bytes()
            except ValueError:  # not JSON-able (inf): skip
                continue
        elif kind == 2:  # another meta entry of the aux
            meta = dict(result.aux.meta)
            name = rng.choice(sorted(meta))
            what = f"meta {name}"
            meta[name] = rng.choice(values[:-1]) if rng.random() < 0.8 else meta.pop(name) and None
            raw = Bundle(tensors=result.aux.tensors, meta={k: v for k, v in meta.items() if v is not None}).to_bytes()
        else:  # the file's bytes: flipped, cut short or extended
            data = bytearray(good)
            choice = rng.random()
            if choice < 0.6:
                for _ in range(rng.randint(1, 4)):
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif choice < 0.8:
                data = data[: rng.randrange(len(data))]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            raw, what = bytes(data), "bytes"
        aux_path.write_bytes(raw)
        r = invoke("extract", masked, "--aux", aux_path, "-o", out, "--key-file", key_file)
        if raw == good:
            continue
        _check_exit(r, what)
        codes[r.exit_code] += 1
        assert not out.exists()
    assert codes[4] > 300  # almost every change fails to open; the rest are usage problems (exit 2)


def test_malformed_headers_of_the_issue_fail_as_one_line(tmp_path, key_file):
    protected, mask = pair(3)
    result = keyed.hide(protected, mask, BOXES, method="sealed", source=KeySource(passphrase=PASSPHRASE))
    masked, aux_path = write(tmp_path, result, "pp")
    header = result.aux.meta["aux.header"]
    for changed in ({**header, "format": "x"}, {**header, "key": {**header["key"], "kdf": [1, 2]}}):
        aux_path.write_bytes(Bundle(tensors=result.aux.tensors, meta={**result.aux.meta, "aux.header": changed}).to_bytes())
        r = invoke("extract", masked, "--aux", aux_path, "-o", tmp_path / "r.png", "--passphrase-file", _pp(tmp_path))
        _check_exit(r)
        assert r.exit_code == 4 and r.stderr.splitlines()[0] == f"error: {AUTH_FAILED}"
    # edited pixels: the same line (the hint says which public fact differs)
    aux_path.write_bytes(result.aux.to_bytes())
    pixels = np.array(result.masked)
    pixels[20, 20, 0] ^= 1
    edited = tmp_path / "edited.masked.png"
    edited.write_bytes(encode_png(pixels))
    r = invoke("extract", edited, "--aux", aux_path, "-o", tmp_path / "r.png", "--passphrase-file", _pp(tmp_path))
    assert r.exit_code == 4 and r.stderr.splitlines()[0] == f"error: {AUTH_FAILED}" and "pixels differ" in r.stderr


# -- item 7: the KDF cost an aux may ask for -----------------------------------------------------------------
@pytest.mark.parametrize("kdf", [
    {"memory_kib": 4 * 1024 * 1024, "iterations": 64, "lanes": 64},  # 4 GiB x 64 x 64: minutes per try
    {"memory_kib": 131072 * 5, "iterations": 10, "lanes": 4},  # just over 4x the memory this version writes
    {"memory_kib": 131072, "iterations": 41, "lanes": 4},
    {"memory_kib": 131072, "iterations": 10, "lanes": 17},
    {"memory_kib": 1024, "iterations": 10, "lanes": 4},  # too cheap: guessing made easy
])
def test_an_aux_asking_for_a_costly_or_cheap_kdf_is_refused_at_once(tmp_path, kdf):
    protected, mask = pair(4)
    result = keyed.hide(protected, mask, BOXES, method="detached", source=KeySource(passphrase=PASSPHRASE))
    masked, aux_path = write(tmp_path, result, "kdf")
    header = result.aux.meta["aux.header"]
    changed = {**header, "key": {**header["key"], "kdf": {**header["key"]["kdf"], **kdf}}}
    aux_path.write_bytes(Bundle(tensors=result.aux.tensors, meta={**result.aux.meta, "aux.header": changed}).to_bytes())
    start = time.perf_counter()
    r = invoke("extract", masked, "--aux", aux_path, "-o", tmp_path / "r.png", "--passphrase-file", _pp(tmp_path))
    assert r.exit_code == 4 and r.stderr.splitlines()[0] == f"error: {AUTH_FAILED}"
    assert time.perf_counter() - start < 5  # no Argon2id run at that cost (4 GiB would take minutes)


def test_what_this_version_writes_is_inside_the_cap():
    params = crypto.KdfParams.fresh()
    crypto.check_cost(params)
    assert crypto.MAX_MEMORY_KIB == 4 * params.memory_kib and crypto.MAX_ITERATIONS == 4 * params.iterations
    with pytest.raises(AuthenticationError):
        crypto.KdfParams.from_dict({**params.to_dict(), "memory_kib": crypto.MAX_MEMORY_KIB + 1})


# -- item 8: weak passphrases from every source -------------------------------------------------------------
@pytest.mark.parametrize("source", ["file", "env"])
def test_a_short_passphrase_is_warned_about_from_a_file_or_the_environment(tmp_path, source):
    args = ["run", "mask", REPO / "examples" / "astronaut.jpg", "-o", tmp_path, "--dry-run"]
    env = None
    if source == "file":
        path = tmp_path / "pp.txt"
        path.write_text("Qz7xK\n")
        args += ["--passphrase-file", path]
    else:
        env = {"IMNKIT_PASSPHRASE": "Qz7xK"}
    r = invoke(*args, env=env)
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stderr.split())
    assert "under 12 characters is weak" in text and "Qz7xK" not in r.stderr
    path = tmp_path / "long.txt"
    path.write_text(PASSPHRASE + "\n")
    r = invoke("run", "mask", REPO / "examples" / "astronaut.jpg", "-o", tmp_path, "--dry-run", "--passphrase-file", path)
    assert r.exit_code == 0 and "weak" not in r.stderr


def test_a_short_passphrase_is_warned_about_in_the_python_api():
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.warns(WeakPassphraseWarning):
        imnkit.mask(image, passphrase="short", allow_no_face=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakPassphraseWarning)
        imnkit.mask(image, passphrase=PASSPHRASE, allow_no_face=True)
