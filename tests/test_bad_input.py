"""Bad input, case by case, through `imnkit run` and `imnkit extract` (issue: ready for real users).

Every case checks the exit code, the message, that no partial output is left, and that the input is
untouched. The network here is a small random one (--set embed.weights=...): these tests are about
behaviour, not quality.
"""

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imnkit.bundle import load_bundle
from imnkit.cli import app
from imnkit.nets.imn import InvertibleMaskNet
from imnkit.imageio import load_image
from imnkit.train import save_weights

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "mask.toml"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = InvertibleMaskNet(num_blocks=1, growth=4, hide="difference")
    return str(save_weights(net, tmp_path_factory.mktemp("w") / "tiny.safetensors"))


@pytest.fixture(scope="module")
def face_rgb(faces_dir):
    """The public-domain astronaut portrait at 320 px (fast to detect)."""
    img = Image.open(faces_dir / "portrait_02.png").convert("RGB").resize((320, 320), Image.Resampling.LANCZOS)
    return img


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(tmp_path, weights, *inputs, extra=()):
    out = tmp_path / "out"
    args = ["run", str(RECIPE), *map(str, inputs), "-o", str(out), "--device", "cpu", "--set", f"embed.weights={weights}", *extra]
    result = CliRunner().invoke(app, args)
    written = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    return result, written


def check_failed(tmp_path, weights, path, code, message):
    before = digest(path)
    result, written = run(tmp_path, weights, path)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert written == []  # nothing partial
    assert digest(path) == before  # input untouched
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_not_an_image(tmp_path, weights):
    p = tmp_path / "notes.jpg"
    p.write_text("shopping list")
    check_failed(tmp_path, weights, p, 1, "not an image")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated(tmp_path, weights, face_rgb, fmt):
    p = tmp_path / f"cut.{fmt.lower()}"
    face_rgb.save(p, format=fmt)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    check_failed(tmp_path, weights, p, 1, "truncated")


def test_zero_bytes(tmp_path, weights):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    check_failed(tmp_path, weights, p, 1, "empty")


def test_enormous_dimensions_are_refused_before_decoding(tmp_path, weights):
    # A PNG header claiming 30000 x 30000 pixels (900 MP) with no data behind it.
    import struct
    import zlib

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    p = tmp_path / "huge.png"
    p.write_bytes(png)
    check_failed(tmp_path, weights, p, 1, "above the 100 MP limit")


def test_one_pixel_and_no_face(tmp_path, weights, faces_dir):
    p = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(p)
    check_failed(tmp_path, weights, p, 3, "no face found")
    result, written = run(tmp_path, weights, p, extra=("--allow-no-face",))
    assert result.exit_code == 0 and "passed through unchanged" in result.stderr
    assert written == ["dot.aux.safetensors", "dot.masked.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "dot.masked.png")), np.asarray(Image.open(p)))


def test_animal_face_is_no_face(tmp_path, weights, faces_dir):
    cat = faces_dir / "noface_03.png"  # a cat's face close-up
    check_failed(tmp_path, weights, cat, 3, "no face found")


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "CMYK"])
def test_colour_modes_are_converted(tmp_path, weights, face_rgb, mode):
    if mode == "I;16":
        img = Image.fromarray(np.asarray(face_rgb.convert("L")).astype(np.uint16) * 257)
        p = tmp_path / "face16.png"
    elif mode == "CMYK":
        img, p = face_rgb.convert("CMYK"), tmp_path / "face_cmyk.jpg"
    else:
        img, p = face_rgb.convert(mode), tmp_path / f"face_{mode}.png"
    img.save(p)
    result, written = run(tmp_path, weights, p, extra=("--json",))
    assert result.exit_code == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["status"] == "ok" and len(written) == 2
    masked = Image.open(tmp_path / "out" / f"{p.stem}.masked.png")
    assert masked.mode == "RGB" and masked.size == (320, 320)


def test_exif_rotated_phone_photo(tmp_path, weights, face_rgb):
    # Stored sideways with orientation 6 ("rotate 90 degrees clockwise to view"), as phones do.
    sideways = face_rgb.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "phone.jpg"
    sideways.save(p, exif=exif.tobytes(), quality=95)
    result, _ = run(tmp_path, weights, p)
    assert result.exit_code == 0, result.stderr
    masked = Image.open(tmp_path / "out" / "phone.masked.png")
    assert masked.size == (320, 320) and not masked.getexif()  # upright, metadata stripped


def test_failed_write_leaves_no_partial_output(tmp_path, weights, face_rgb, monkeypatch):
    p = tmp_path / "face.png"
    face_rgb.save(p)
    real_replace = os.replace
    calls = []

    def second_write_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_write_fails)
    result, written = run(tmp_path, weights, p)
    assert result.exit_code == 1 and "No space left" in result.stderr
    assert written == []  # the first output was removed again


def test_unwritable_output_folder(tmp_path, weights, face_rgb):
    p = tmp_path / "face.png"
    face_rgb.save(p)
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    result = CliRunner().invoke(app, ["run", str(RECIPE), str(p), "-o", str(blocker), "--device", "cpu",
                                      "--set", f"embed.weights={weights}"])
    assert result.exit_code == 1 and "failed" in result.stderr


def test_determinism_byte_identical_outputs(tmp_path, weights, face_rgb):
    """The Mask is the same for a given input, recipe and seed; a keyed seal draws a fresh key and nonce
    (masked bytes differ) but recovers the same pixels; the keyless inn method is byte-identical."""
    p = tmp_path / "face.png"
    face_rgb.save(p)
    outs = []
    for name, method in (("a", "sealed"), ("b", "sealed"), ("c", "inn"), ("d", "inn")):
        r = CliRunner().invoke(app, ["run", str(RECIPE), str(p), "-o", str(tmp_path / name), "--device", "cpu",
                                     "--set", f"embed.weights={weights}", "--set", f"embed.method={method}",
                                     "--seed", "7", "--save-mask"])
        assert r.exit_code == 0, r.stderr
        r = CliRunner().invoke(app, ["extract", str(tmp_path / name / "face.masked.png"), "--aux",
                                     str(tmp_path / name / "face.aux.safetensors")])
        assert r.exit_code == 0, r.stderr
        outs.append({f.name: f.read_bytes() for f in (tmp_path / name).iterdir()})
    assert outs[0].keys() == {"face.masked.png", "face.aux.safetensors", "face.mask.png", "face.recovered.png"}
    sealed_a, sealed_b, inn_c, inn_d = outs
    assert sealed_a["face.mask.png"] == sealed_b["face.mask.png"] == inn_c["face.mask.png"]
    assert sealed_a["face.aux.safetensors"] != sealed_b["face.aux.safetensors"]  # a fresh key and nonce per seal
    carried = load_bundle(tmp_path / "a" / "face.aux.safetensors").meta["aux.header"]["payloads"][0]["carry"]
    # embedded, the payload lands in a key-dependent order; carried in the aux, the masked photo is the Mask
    assert (sealed_a["face.masked.png"] != sealed_b["face.masked.png"]) == (carried == "stego")
    assert load_image(tmp_path / "a" / "face.recovered.png").tobytes() == load_image(tmp_path / "b" / "face.recovered.png").tobytes()
    assert inn_c == inn_d
