"""Public-key recipients, the aux inside the PNG, one face at a time, rekey and the audit log (docs/security.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imnkit.api import unmask
from imnkit.bundle import Bundle
from imnkit.cli import app
from imnkit.errors import UsageError
from imnkit.imageio import encode_png, load_image
from imnkit.protect import audit, container, keyed
from imnkit.protect.crypto import AUTH_FAILED, AuthenticationError
from imnkit.protect.keys import KeySource, unlock_key
from imnkit.protect.recipients import Identity, parse_recipient, write_identity

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "astronaut.jpg"
BOXES = [(8, 8, 56, 72), (64, 80, 120, 150)]  # two "faces" of a synthetic photo


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Two identities (one post-quantum) written as `imnkit keygen --identity` writes them."""
    folder = tmp_path_factory.mktemp("ids")
    out = {}
    for name, pq in (("alice", False), ("bob", True)):
        r = invoke("keygen", "--identity", folder / f"{name}.key", *(["--pq"] if pq else []))
        assert r.exit_code == 0, r.stderr
        out[name] = folder / f"{name}.key"
        assert r.stdout.strip() == (folder / f"{name}.key.pub").read_text().strip()
    return out


def pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    protected = rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)
    mask = protected.copy()
    for y0, x0, y1, x1 in BOXES:
        mask[y0:y1, x0:x1] = (255 - protected[y0:y1, x0:x1]) // 2 + 40
    return protected, mask


def masked_png(tmp_path: Path, recipients, seed: int = 0, name: str = "photo.masked.png"):
    """A masked PNG with its aux inside, sealed to ``recipients`` (what `imnkit run --recipient` writes)."""
    protected, mask = pair(seed)
    result = keyed.hide(protected, mask, BOXES, method="sealed", source=KeySource(recipients=recipients),
                        treatments=["swap", "warp5"])
    path = tmp_path / name
    path.write_bytes(container.with_aux(encode_png(result.masked), result.aux.to_bytes()))
    return path, protected, result


def recipient_of(identity_path: Path):
    return parse_recipient((identity_path.parent / (identity_path.name + ".pub")).read_text())


# -- keys and identities ---------------------------------------------------------------------------
def test_identity_files_are_private_and_recipients_checksummed(people):
    for path in people.values():
        assert (path.stat().st_mode & 0o777) == 0o600
        assert (path.parent / (path.name + ".pub")).stat().st_mode & 0o777 == 0o644
    text = (people["alice"].parent / "alice.key.pub").read_text().strip()
    assert len(text) < 70 and text.startswith("imnkit1")
    typo = text[:-3] + ("a" if text[-3] != "a" else "b") + text[-2:]
    with pytest.raises(UsageError, match="checksum"):
        parse_recipient(typo)
    with pytest.raises(UsageError):
        parse_recipient("age1notours")
    assert "secret" not in repr(Identity.generate()) and repr(Identity.generate()).startswith("Identity(x25519")


def test_identity_locked_by_passphrase(tmp_path):
    made = Identity.generate()
    path, _ = write_identity(tmp_path / "id.key", made, passphrase="a long passphrase for this key")
    text = path.read_text()
    assert json.loads(text)["secret"]["wrap"] == "passphrase" and "key" not in json.loads(text)["secret"]
    masked, _, _ = masked_png(tmp_path, [made.recipient])
    out = tmp_path / "r.png"
    r = invoke("extract", masked, "--identity", path, "-o", out, env={"IMNKIT_PASSPHRASE": "wrong passphrase here"})
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists()
    r = invoke("extract", masked, "--identity", path, "-o", out, env={"IMNKIT_PASSPHRASE": "a long passphrase for this key"})
    assert r.exit_code == 0, r.stderr


# -- masking to recipients ---------------------------------------------------------------------------
def test_run_with_only_a_recipient_writes_one_self_contained_png(people, tmp_path):
    recipient = (people["alice"].parent / "alice.key.pub").read_text().strip()
    out = tmp_path / "out"
    r = invoke("run", "mask", EXAMPLE, "-o", out, "--recipient", recipient, "--json")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.masked.png"]  # no sidecar, no key anywhere
    png = (out / "astronaut.masked.png").read_bytes()
    with Image.open(out / "astronaut.masked.png") as im:  # every viewer still shows it
        im.load()
        assert im.size == (512, 512)
    aux = Bundle.from_bytes(container.aux_of(png), framework="numpy")
    assert "aux.key" not in aux.tensors and "aux.key_wrapped" not in aux.tensors
    # the content key and every face key: no byte string of them anywhere in the file
    identity = Identity.from_json(people["alice"].read_text(), "alice")
    header = aux.meta["aux.header"]
    key = unlock_key(header["key"], aux.tensors, KeySource(identities=[identity]), context=keyed.header_digest(header))
    for secret in [key] + [keyed.face_key(key, i) for i in range(len(header["regions"]))]:
        assert secret not in png
    rec = tmp_path / "rec.png"
    r = invoke("extract", out / "astronaut.masked.png", "--identity", people["alice"], "-o", rec)
    assert r.exit_code == 0, r.stderr
    assert (rec.stat().st_mode & 0o777) == 0o600
    # the same faces as a sidecar run's: the recovered region is close to the original photo's
    original = load_image(EXAMPLE)
    y0, x0, y1, x1 = header["regions"][0]
    diff = load_image(rec)[y0:y1, x0:x1].astype(float) - original[y0:y1, x0:x1]
    assert 10 * np.log10(255**2 / np.mean(diff**2)) > 40


def test_sidecar_also_writes_the_aux(people, tmp_path):
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path, "--recipients-file", people["alice"].parent / "alice.key.pub",
               "--sidecar")
    assert r.exit_code == 0, r.stderr
    side = tmp_path / "astronaut.aux.safetensors"
    assert side.is_file() and container.aux_of((tmp_path / "astronaut.masked.png").read_bytes()) == side.read_bytes()
    r = invoke("extract", tmp_path / "astronaut.masked.png", "--aux", side, "--identity", people["alice"], "-o", tmp_path / "r.png")
    assert r.exit_code == 0, r.stderr


def test_each_of_two_recipients_opens_and_a_stranger_does_not(people, tmp_path):
    masked, protected, _ = masked_png(tmp_path, [recipient_of(people["alice"]), recipient_of(people["bob"])])
    results = []
    for who in ("alice", "bob"):
        out = tmp_path / f"{who}.png"
        r = invoke("extract", masked, "--identity", people[who], "-o", out)
        assert r.exit_code == 0, r.stderr
        results.append(load_image(out))
    assert np.array_equal(results[0], results[1])
    stranger = tmp_path / "eve.key"
    write_identity(stranger, Identity.generate())
    out = tmp_path / "eve.png"
    r = invoke("extract", masked, "--identity", stranger, "-o", out)
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists()
    # without any identity: it says what to give, and writes nothing
    r = invoke("extract", masked, "-o", out)
    assert r.exit_code == 2 and "--identity" in r.stderr and not out.exists()


def test_post_quantum_round_trip_in_the_api(people):
    protected, mask = pair(3)
    made = Identity.generate(pq=True)
    result = keyed.hide(protected, mask, BOXES, method="detached", source=KeySource(recipients=[made.recipient]))
    assert result.aux.meta["aux.header"]["key"]["recipients"][0]["suite"] == "mlkem768-x25519"
    assert np.array_equal(unmask(result.masked, result.aux.to_bytes(), identity=made), protected)
    with pytest.raises(AuthenticationError):
        unmask(result.masked, result.aux.to_bytes(), identity=Identity.generate(pq=True))


def test_edited_chunk_and_another_photos_chunk_are_refused(people, tmp_path):
    alice = [recipient_of(people["alice"])]
    first, _, _ = masked_png(tmp_path, alice, seed=1, name="a.masked.png")
    second, _, _ = masked_png(tmp_path, alice, seed=2, name="b.masked.png")
    png = first.read_bytes()
    raw = bytearray(container.aux_of(png))
    raw[len(raw) // 2] ^= 0x01  # one bit of the aux (its chunk's CRC made right again)
    edited = tmp_path / "edited.masked.png"
    edited.write_bytes(container.with_aux(png, bytes(raw)))
    swapped = tmp_path / "swapped.masked.png"
    swapped.write_bytes(container.with_aux(png, container.aux_of(second.read_bytes())))
    out = tmp_path / "out.png"
    r = invoke("extract", edited, "--identity", people["alice"], "-o", out)
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists(), r.stderr
    r = invoke("extract", swapped, "--identity", people["alice"], "-o", out)  # the consistency check says why
    assert r.exit_code == 4 and "does not belong to this masked image" in r.stderr and not out.exists()
    r = invoke("extract", swapped, "--identity", people["alice"], "-o", out, "--force")  # forced: authentication
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists(), r.stderr


# -- one face at a time ----------------------------------------------------------------------------------
def test_one_face_comes_off_alone_and_exactly(people, tmp_path):
    masked, protected, result = masked_png(tmp_path, [recipient_of(people["alice"])])
    full = tmp_path / "all.png"
    assert invoke("extract", masked, "--identity", people["alice"], "-o", full).exit_code == 0
    masked_pixels, everything = load_image(masked), load_image(full)
    for n, (y0, x0, y1, x1) in enumerate(BOXES):
        out = tmp_path / f"face{n}.png"
        r = invoke("extract", masked, "--identity", people["alice"], "--face", n, "-o", out)
        assert r.exit_code == 0, r.stderr
        one = load_image(out)
        inside = np.zeros(one.shape[:2], bool)
        inside[y0:y1, x0:x1] = True
        assert np.array_equal(one[inside], everything[inside])  # that face: the full extract's pixels
        assert np.array_equal(one[~inside], masked_pixels[~inside])  # every other face stays masked
    y0, x0, y1, x1 = BOXES[1]
    out = tmp_path / "at.png"
    assert invoke("extract", masked, "--identity", people["alice"], "--face-at", f"{x0 + 3},{y0 + 3}", "-o", out).exit_code == 0
    assert np.array_equal(load_image(out), load_image(tmp_path / "face1.png"))
    r = invoke("extract", masked, "--identity", people["alice"], "--face", 5, "-o", tmp_path / "none.png")
    assert r.exit_code == 2 and "no face 5" in r.stderr and not (tmp_path / "none.png").exists()


def test_inspect_lists_faces_without_keys_or_pixels(people, tmp_path):
    masked, _, _ = masked_png(tmp_path, [recipient_of(people["alice"])])
    r = invoke("inspect", masked, "--json")
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.stdout)
    assert [f["box"] for f in info["faces"]] == [list(b) for b in BOXES]
    assert [f["treatment"] for f in info["faces"]] == ["swap", "warp5"]
    sealed = container.aux_of(masked.read_bytes())
    entry = Bundle.from_bytes(sealed, framework="numpy").meta["aux.header"]["key"]["recipients"][0]["sealed"]
    assert entry not in r.stdout and "<sealed key, 80 bytes>" in r.stdout


# -- rotation and audit -------------------------------------------------------------------------------
def test_rekey_changes_no_pixel_and_shuts_out_a_removed_recipient(people, tmp_path):
    masked, _, _ = masked_png(tmp_path, [recipient_of(people["alice"]), recipient_of(people["bob"])])
    before = load_image(masked)
    log = tmp_path / "audit.jsonl"
    r = invoke("rekey", masked, "--identity", people["alice"], "--recipient", str(recipient_of(people["bob"])),
               "--audit-log", log)
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(load_image(masked), before)
    out = tmp_path / "r.png"
    r = invoke("extract", masked, "--identity", people["alice"], "-o", out)
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists()
    r = invoke("extract", masked, "--identity", people["bob"], "-o", out, "--audit-log", log)
    assert r.exit_code == 0, r.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [x["command"] for x in records] == ["rekey", "extract"]
    assert records[1]["recipient"] == recipient_of(people["bob"]).fingerprint
    assert invoke("audit", "verify", log).exit_code == 0
    # a stranger's identity cannot re-key it (exit 4, the file unchanged)
    stranger = tmp_path / "eve.key"
    write_identity(stranger, Identity.generate())
    data = masked.read_bytes()
    r = invoke("rekey", masked, "--identity", stranger, "--recipient", str(Identity.generate().recipient))
    assert r.exit_code == 4 and masked.read_bytes() == data


def test_audit_chain_names_an_edited_deleted_or_reordered_line(tmp_path):
    log = tmp_path / "audit.jsonl"
    for i in range(5):
        audit.append(log, command="extract", file=f"p{i}.png", sha256="0" * 64, faces="all", recipient="f" * 16)
    assert audit.verify(log) == (5, None, "")
    lines = log.read_text().splitlines(keepends=True)
    cases = {
        "edited": lines[:2] + [lines[2].replace("p2.png", "px.png")] + lines[3:],
        "deleted": lines[:2] + lines[3:],
        "reordered": lines[:1] + [lines[2], lines[1]] + lines[3:],
    }
    for name, changed in cases.items():
        log.write_text("".join(changed))
        count, bad, why = audit.verify(log)
        assert bad == (3 if name != "reordered" else 2), (name, bad, why)
        r = invoke("audit", "verify", log)
        assert r.exit_code == 4 and f"line {bad}:" in " ".join(r.stderr.split())


@pytest.mark.parametrize("method", ["sealed", "detached"])
def test_format_2_auxes_written_before_this_version_still_open(tmp_path, method):
    # tests/data/aux_v2: a synthetic photo masked by the code of 8f0be18 (aux format 2, one key,
    # locked with the key file bytes(range(32))): they open as before, whole, never one face.
    data = REPO / "tests" / "data" / "aux_v2"
    key_file = tmp_path / "k.key"
    key_file.write_bytes(bytes(range(32)))
    key_file.chmod(0o600)
    aux = data / f"{method}.aux.safetensors"
    assert Bundle.from_bytes(aux.read_bytes(), framework="numpy").meta["aux.header"]["format"] == 2
    out = tmp_path / "r.png"
    r = invoke("extract", data / f"{method}.masked.png", "--aux", aux, "--key-file", key_file, "-o", out)
    assert r.exit_code == 0, r.stderr
    recovered, protected = load_image(out), load_image(data / "protected.png")
    if method == "detached":
        assert np.array_equal(recovered, protected)
    else:
        diff = recovered.astype(float) - protected
        assert 10 * np.log10(255**2 / max(np.mean(diff**2), 1e-9)) > 40
    r = invoke("extract", data / f"{method}.masked.png", "--aux", aux, "--key-file", key_file, "--face", 0,
               "-o", tmp_path / "one.png")
    assert r.exit_code == 2 and "only all faces" in r.stderr and not (tmp_path / "one.png").exists()


# -- the PNG stays a PNG ------------------------------------------------------------------------------------
def test_png_with_the_aux_inside_passes_pngcheck(people, tmp_path):
    masked, _, _ = masked_png(tmp_path, [recipient_of(people["alice"])])
    with Image.open(masked) as im:
        im.verify()
    if shutil.which("pngcheck") is None:
        pytest.skip("pngcheck is not installed (apt-get install pngcheck; .ci/run installs it)")
    r = subprocess.run(["pngcheck", str(masked)], capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def test_recipients_never_need_a_secret_to_mask(people):
    source = KeySource(recipients=[recipient_of(people["alice"])])
    assert source.wrap == "recipients" and source.identities == []
    with pytest.raises(UsageError):
        KeySource(recipients=[recipient_of(people["alice"])], passphrase="also a passphrase here")


# -- clips ------------------------------------------------------------------------------------------------
def test_a_clip_masked_for_a_recipient_comes_back_with_the_identity(people, tmp_path):
    pytest.importorskip("av", reason="PyAV (imnkit[video]) is not installed")
    from test_video import decode, make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, load_image(EXAMPLE), frames=8, size=(160, 160), sound=None, codec="ffv1")
    out = tmp_path / "out"
    r = invoke("run", "mask", clip, "-o", out, "--recipient", str(recipient_of(people["bob"])), "--sidecar")
    assert r.exit_code == 0, r.stderr
    aux = out / "clip.aux.safetensors"  # --sidecar: also beside the clip (it rides inside: test_video_recipients)
    header = Bundle.from_bytes(aux.read_bytes(), framework="numpy").meta["aux.video"]
    assert header["key"]["wrap"] == "recipients" and "aux.key" not in Bundle.from_bytes(aux.read_bytes()).tensors
    stranger = tmp_path / "eve.key"
    write_identity(stranger, Identity.generate())
    r = invoke("extract", out / "clip.masked.mkv", "--aux", aux, "--identity", stranger)
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not (out / "clip.recovered.mkv").exists()
    r = invoke("extract", out / "clip.masked.mkv", "--aux", aux, "--identity", people["bob"])
    assert r.exit_code == 0, r.stderr
    assert all(np.array_equal(a, b) for a, b in zip(decode(out / "clip.recovered.mkv"), decode(clip)))


def test_preview_with_recipients_needs_no_identity_and_says_so(people, tmp_path):
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path, "--recipient", str(recipient_of(people["alice"])), "--preview")
    assert r.exit_code == 0, r.stderr
    sheet = load_image(tmp_path / "astronaut.PRIVATE-preview.png")
    assert (tmp_path / "astronaut.PRIVATE-preview.png").stat().st_mode & 0o777 == 0o600
    assert "recovered panels are grey" in " ".join(r.stderr.split())
    assert np.all(sheet[:, -192:] == 128)  # the last panel: no recovery pretended
