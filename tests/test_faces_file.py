"""The faces file (imnkit.faces_file): `imnkit faces`, `imnkit run --faces`, its errors, doubtful detections."""

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imnkit.cli import app
from imnkit.bundle import load_bundle
from imnkit.errors import UsageError
from imnkit.faces_file import (SCHEMA, detect_faces, faces_document, load_faces_file, record_box,
                               write_faces_file)
from imnkit.imageio import load_image
from imnkit.metrics import compare

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "astronaut.jpg"  # one face, 512 px
BLIND = ("--set", "align.threshold=2.0", "--set", "align.centerface_threshold=0.99")  # neither detector finds it


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def found():
    """The example's faces as `imnkit faces` lists them (detected once for the module)."""
    return detect_faces(load_image(EXAMPLE))["faces"]


def test_a_document_written_reads_back_the_same_and_private(tmp_path):
    image = np.zeros((40, 60, 3), np.uint8)
    doc = faces_document(Path("a.png"), image, [{"box": [1, 2, 30, 20], "identity": None}])
    path = write_faces_file(tmp_path / "a.faces.json", doc)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["schema"] == SCHEMA
    faces = load_faces_file(path, image)
    assert faces == doc["faces"] and faces[0]["detector"] == "user" and faces[0]["treatment"] is None
    assert record_box(faces[0]["box"]) == (2, 1, 20, 30)  # [x0, y0, x1, y1] in the file, (y0, x0, y1, x1) inside
    with pytest.raises(UsageError, match="another photo"):
        load_faces_file(path, image + 1)


def test_imnkit_faces_lists_the_face_without_masking(tmp_path, found):
    r = invoke("faces", EXAMPLE, "-o", tmp_path)
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["astronaut.faces.json"]  # nothing masked
    faces = load_faces_file(tmp_path / "astronaut.faces.json", load_image(EXAMPLE))
    assert faces == found and len(faces) == 1
    assert faces[0]["detector"] == "dlib" and faces[0]["review"] is False and len(faces[0]["points"]) == 5
    assert invoke("faces", EXAMPLE, "-o", tmp_path).exit_code == 1  # exists: refused without --overwrite
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path / "out", "--faces", tmp_path, "--json")  # a folder of them
    assert r.exit_code == 0, r.stderr
    listed = json.loads(r.stdout)["report"]["faces"]
    assert [(f["box"], f["masked"], f["review"]) for f in listed] == [(found[0]["box"], True, False)]


def test_a_face_added_by_hand_is_masked_and_comes_back(tmp_path, found):
    image = load_image(EXAMPLE)
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path, *BLIND)
    assert r.exit_code == 3 and not list(tmp_path.iterdir())  # the premise: the detector misses it
    path = write_faces_file(tmp_path / "hand.faces.json",
                            faces_document(EXAMPLE, image, [{"box": found[0]["box"]}]))  # a box, nothing else
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path, *BLIND, "--faces", path, "--json", "--keep-bundles")
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["report"]["faces"][0]["detector"] == "user" and row["report"]["faces"][0]["masked"]
    bundle = load_bundle(tmp_path / "astronaut.bundle.safetensors")
    assert bundle.meta["faces.source"] == ["user"] and bundle.meta["swap.treatments"] == ["swap"]  # landmarks fitted
    y0, x0, y1, x1 = record_box(found[0]["box"])
    masked = load_image(tmp_path / "astronaut.masked.png")
    core = (slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4))
    assert np.any(masked[core] != image[core], axis=2).mean() > 0.5  # replaced
    r = invoke("extract", tmp_path / "astronaut.masked.png", "--aux", tmp_path / "astronaut.aux.safetensors")
    assert r.exit_code == 0, r.stderr
    rec = compare(image, load_image(tmp_path / "astronaut.recovered.png"), (y0, x0, y1, x1))
    assert rec.psnr_y > 42.0, rec


def test_a_face_left_out_of_the_file_is_left_as_it_is(tmp_path, found):
    image = load_image(EXAMPLE)
    path = write_faces_file(tmp_path / "none.faces.json", faces_document(EXAMPLE, image, []))
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path, "--faces", path, "--save-mask", "--json")
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(load_image(tmp_path / "astronaut.mask.png"), image)  # the Mask photo before hiding
    assert "lists no face" in " ".join(json.loads(r.stdout.strip().splitlines()[-1])["notes"])


def _faces_json(image: np.ndarray, faces: list, **photo) -> dict:
    doc = faces_document(EXAMPLE, image, [])
    doc["photo"].update(photo)
    doc["faces"] = faces
    return doc


@pytest.mark.parametrize("case, message", [
    ("invalid", "not valid JSON"),
    ("other_photo", "another photo"),
    ("outside", "outside the 512x512 photo"),
    ("zero_area", "zero area"),
    ("treatment", "unknown treatment"),
    ("identity", "unknown identity"),
])
def test_a_bad_faces_file_is_one_line_exit_2_and_nothing_written(tmp_path, case, message):
    image = load_image(EXAMPLE)
    path = tmp_path / "in" / "bad.faces.json"
    path.parent.mkdir()
    docs = {
        "other_photo": _faces_json(image, [], sha256="0" * 64),
        "outside": _faces_json(image, [{"box": [400, 400, 513, 450]}]),
        "zero_area": _faces_json(image, [{"box": [100, 100, 100, 150]}]),
        "treatment": _faces_json(image, [{"box": [10, 10, 50, 50], "treatment": "blur"}]),
        "identity": _faces_json(image, [{"box": [10, 10, 50, 50], "identity": "nobody_at_all"}]),
    }
    path.write_text('{"schema": "imnkit.faces/1", "faces": [' if case == "invalid" else json.dumps(docs[case]))
    out = tmp_path / "out"
    r = invoke("run", "mask", EXAMPLE, "-o", out, "--faces", path)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and r.stderr.count("error:") == 1
    assert not out.exists()


def test_a_faces_folder_needs_a_file_for_every_photo(tmp_path):
    r = invoke("run", "mask", EXAMPLE, "-o", tmp_path / "out", "--faces", tmp_path)
    assert r.exit_code == 2 and "does not exist" in r.stderr
    assert not (tmp_path / "out").exists()


def test_treatment_and_identity_per_face_are_honoured(tmp_path, found):
    from imnkit.face.identities import identity_names

    image = load_image(EXAMPLE)
    name = identity_names()[-1]
    for case, face in (("obfuscate", {**found[0], "treatment": "obfuscate"}), ("named", {**found[0], "identity": name})):
        path = write_faces_file(tmp_path / f"{case}.faces.json", faces_document(EXAMPLE, image, [face]))
        out = tmp_path / case
        r = invoke("run", "mask", EXAMPLE, "-o", out, "--faces", path, "--keep-bundles")
        assert r.exit_code == 0, r.stderr
        meta = load_bundle(out / "astronaut.bundle.safetensors").meta
        if case == "obfuscate":
            assert meta["swap.treatments"] == ["obfuscate"]
        else:
            assert meta["swap.treatments"] == ["swap"] and meta["swap.identities"] == [name]


def test_a_doubtful_headlight_is_flagged_and_left_as_it_is(tmp_path):
    from importlib import resources

    pytest.importorskip("skimage")
    moto = Path(str(resources.files("skimage.data").joinpath("motorcycle_left.png")))  # nobody in it
    r = invoke("faces", moto, "-o", tmp_path, "--json")
    assert r.exit_code == 0, r.stderr
    faces = json.loads(r.stdout)["faces"]
    assert [(f["review"], f["treatment"]) for f in faces] == [(True, "none")]  # a headlight, flagged
    r = invoke("run", "mask", moto, "-o", tmp_path / "out")
    assert r.exit_code == 3 and "doubtful" in r.stderr and not (tmp_path / "out").exists()
    r = invoke("run", "mask", moto, "-o", tmp_path / "out", "--set", "align.doubtful=mask", "--save-mask", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["report"]["faces"][0]["masked"]  # as before the flag


def test_an_unedited_faces_file_masks_what_a_plain_run_masks(found):
    from imnkit.bundle import Bundle
    from imnkit.recipe import load_recipe, resolve_recipe_path
    from imnkit.stage import StageContext, run_stage

    step = next(s for s in load_recipe(resolve_recipe_path("mask")).steps if s.stage.name == "align")
    runs = []
    for options in ({}, {"faces": {"photo": found}}):
        bundle = Bundle(tensors={"image.protected": load_image(EXAMPLE)}, meta={}, source="photo")
        run_stage(step.stage, bundle, step.params, StageContext(options=options))
        runs.append(bundle)
    for key in ("faces.boxes", "faces.landmarks", "faces.affine"):
        assert np.array_equal(np.asarray(runs[0].tensors[key]), np.asarray(runs[1].tensors[key])), key
    assert runs[0].meta["faces.source"] == runs[1].meta["faces.source"] == ["dlib"]
