"""The default recipe (sealed) end to end: run -> saved PNG -> extract.

Floors are a few dB under the numbers measured by benchmarks/roundtrip.py (docs/benchmarks.md), so a
regression in the codec, the embedding, the region handling or the 8-bit path fails here.
"""

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from imnkit.cli import app
from imnkit.bundle import load_bundle
from imnkit.imageio import load_image
from imnkit.metrics import compare

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "astronaut.jpg"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_default_recipe_round_trip_on_the_bundled_example(tmp_path):
    r = invoke("run", REPO / "recipes" / "mask.toml", EXAMPLE, "-o", tmp_path, "--save-mask", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    masked_png, aux_path = tmp_path / "astronaut.masked.png", tmp_path / "astronaut.aux.safetensors"
    r = invoke("extract", masked_png, "--aux", aux_path, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    protected = load_image(EXAMPLE)
    mask, masked = load_image(tmp_path / "astronaut.mask.png"), load_image(masked_png)
    recovered = load_image(tmp_path / "astronaut.recovered.png")
    aux = load_bundle(aux_path)
    assert aux.meta["aux.method"] == "sealed" and "aux.key" in aux.tensors
    regions = aux.tensors["aux.regions"].tolist()
    assert len(regions) == 1
    box = regions[0]
    outside = np.ones(protected.shape[:2], bool)
    outside[box[0] : box[2], box[1] : box[3]] = False
    assert np.array_equal(recovered[outside], protected[outside])  # bit-exact outside the face
    assert np.array_equal(masked[outside], mask[outside])
    rec = compare(protected, recovered, box)
    inv = compare(mask, masked, box)
    assert rec.psnr_y > 45.0 and rec.psnr_rgb > 42.0 and rec.ssim > 0.98, rec
    assert inv.psnr_rgb > 50.0, inv
    ident = json.loads(invoke("metrics", EXAMPLE, tmp_path / "astronaut.recovered.png", "--identity", "--json").stdout)
    assert ident["identity"][0]["distance"] <= 0.1
    masked_ident = json.loads(invoke("metrics", EXAMPLE, masked_png, "--identity", "--json").stdout)
    assert masked_ident["identity"][0]["distance"] >= 0.6


def test_group_photo_every_face_is_masked_and_recovered(tmp_path, faces_dir):
    photo = faces_dir / "multi_01.jpg"  # two official portraits side by side
    r = invoke("run", REPO / "recipes" / "mask.toml", photo, "-o", tmp_path, "--device", "cpu", "--keep-bundles")
    assert r.exit_code == 0, r.stderr
    bundle = load_bundle(tmp_path / "multi_01.bundle.safetensors")
    n_faces = bundle.tensors["faces.boxes"].shape[0]
    assert n_faces == 2 and len(set(bundle.meta["swap.identities"])) == 2
    r = invoke("extract", tmp_path / "multi_01.masked.png", "--aux", tmp_path / "multi_01.aux.safetensors")
    assert r.exit_code == 0, r.stderr
    protected, recovered = load_image(photo), load_image(tmp_path / "multi_01.recovered.png")
    for box in bundle.tensors["faces.boxes"].tolist():
        assert compare(protected, recovered, tuple(box)).psnr_y > 42.0
