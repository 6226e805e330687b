"""The hand-labelled looks of the measuring set (benchmarks/data/looks.tsv) and the look-agreement
figures benchmarks/naturalness.py computes from them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def naturalness():
    spec = importlib.util.spec_from_file_location("naturalness_bench", BENCH / "naturalness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_reference_face_has_a_look_label(naturalness):
    # Every face box of face_boxes.json is labelled (no face left out of the agreement by accident);
    # only faces that cannot be judged carry '?', and those are left out when read.
    ref = json.loads((BENCH / "data" / "face_boxes.json").read_text())["photos"]
    rows = [line.split("\t") for line in (BENCH / "data" / "looks.tsv").read_text().splitlines()
            if line and not line.startswith("#") and not line.startswith("photo\t")]
    labelled = {(r[0], tuple(int(v) for v in r[1].split())) for r in rows}
    boxes = {(photo, tuple(b)) for photo, bs in ref.items() for b in bs}
    assert labelled == boxes
    unsure = [r for r in rows if r[2] == "?"]
    assert len(unsure) <= 2
    assert all(r[2] in ("f", "m", "?") and r[3] in ("child", "young", "adult", "senior", "?") for r in rows)
    read = naturalness.read_looks(BENCH / "data" / "looks.tsv")
    assert sum(map(len, read.values())) == len(rows) - len(unsure)


def test_label_found_by_the_detected_box_centre(naturalness):
    labels = naturalness.read_looks(BENCH / "data" / "looks.tsv")
    # multi_01: two faces (a man read as adult, one as senior); a dlib box is smaller than the reference
    # box, so the match goes by the centre.
    found = {naturalness.label_of(labels["multi_01.jpg"], b) for b, _, _ in labels["multi_01.jpg"]}
    assert found == {("m", "adult"), ("m", "senior")}
    assert naturalness.label_of(labels["multi_01.jpg"], (0, 0, 4, 4)) is None


def test_look_agreement_counts(naturalness):
    pairs = [(("f", "child"), ("f", "young")), (("m", "adult"), ("f", "adult")),
             (("m", "young"), ("m", "child")), (("f", "senior"), ("f", "young"))]
    got = naturalness.look_agreement(pairs)
    assert got["labelled_faces"] == 4
    assert got["same_gender_pct"] == 75.0
    assert got["age_band_or_next_pct"] == 75.0  # senior -> young is two bands off
    assert got["same_age_band_pct"] == 25.0
    assert got["child_given_older"] == 1 and got["older_given_child"] == 1
