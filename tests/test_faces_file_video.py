"""A clip's faces file: `imnkit faces clip`, `imnkit run mask clip --faces`: tracks dropped, added by hand, errors.

Small ffv1 clips (8 frames, 160 px) panning over examples/astronaut.jpg; needs PyAV (imnkit[video]).
"""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imnkit.cli import app
from imnkit.faces_file import SCHEMA, clip_facts, record_box, track_box

pytest.importorskip("av", reason="PyAV (imnkit[video]) is not installed")

from test_video import decode, make_clip  # noqa: E402  (after the skip: it needs PyAV)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "astronaut.jpg"
BLIND = ("--set", "align.threshold=2.0", "--set", "align.centerface_threshold=0.99")  # neither detector finds it


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The clip, its frames as decoded, and the faces file `imnkit faces` writes for it."""
    from imnkit.imageio import load_image

    root = tmp_path_factory.mktemp("clipfaces")
    path = root / "clip.mkv"
    make_clip(path, load_image(EXAMPLE), frames=8, size=(160, 160), sound=None, codec="ffv1")
    r = invoke("faces", path, "-o", root / "lists")
    assert r.exit_code == 0, r.output
    listed = root / "lists" / "clip.faces.json"
    return {"path": path, "frames": decode(path), "listed": listed, "doc": json.loads(listed.read_text()), "root": root}


def _write(tmp_path: Path, doc: dict, name: str = "edited.faces.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _box_pixels(frame: np.ndarray, box) -> np.ndarray:
    y0, x0, y1, x1 = box
    return frame[y0:y1, x0:x1]


def test_the_faces_file_of_a_clip_lists_its_one_track(clip):
    doc, path = clip["doc"], clip["listed"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.faces.json"]  # nothing masked
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert doc["schema"] == SCHEMA and set(doc) == {"schema", "clip", "tracks"}
    assert doc["clip"] == clip_facts(clip["path"])
    assert doc["clip"]["frames"] == 8 and (doc["clip"]["width"], doc["clip"]["height"]) == (160, 160)
    (track,) = doc["tracks"]
    assert (track["id"], track["first"], track["last"]) == (0, 0, 7)
    assert set(track["boxes"]) >= {"0", "7"} and track["treatment"] is None and track["identity"] is None
    for f, (x0, y0, x1, y1) in track["boxes"].items():
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 160
    assert sum(line.strip().startswith('{"id": 0, "first": 0') for line in path.read_text().splitlines()) == 1  # a track a line


def test_track_box_interpolates_between_key_frames_and_holds_outside():
    entry = {"boxes": {"2": [0, 0, 10, 20], "6": [8, 4, 18, 24]}}
    assert track_box(entry, 0) == track_box(entry, 2) == record_box([0, 0, 10, 20])
    assert track_box(entry, 4) == record_box([4, 2, 14, 22])
    assert track_box(entry, 7) == record_box([8, 4, 18, 24])


def test_an_unedited_file_masks_the_face_and_a_dropped_track_leaves_it_bare(clip, tmp_path):
    box = record_box(clip["doc"]["tracks"][0]["boxes"]["0"])
    r = invoke("run", "mask", clip["path"], "-o", tmp_path / "all", "--faces", clip["listed"])
    assert r.exit_code == 0, r.output
    masked = decode(tmp_path / "all" / "clip.masked.mkv")
    assert not np.array_equal(_box_pixels(masked[0], box), _box_pixels(clip["frames"][0], box))  # the face is masked

    dropped = copy.deepcopy(clip["doc"])
    dropped["tracks"] = []
    r = invoke("run", "mask", clip["path"], "-o", tmp_path / "none", "--faces", _write(tmp_path, dropped), "--json")
    assert r.exit_code == 0, r.output
    notes = " ".join(json.loads(r.stdout.splitlines()[-1])["notes"])
    assert "1 tracked face(s) not listed" in notes and "passed through unchanged" in notes
    bare = decode(tmp_path / "none" / "clip.masked.mkv")
    assert len(bare) == 8
    for before, after in zip(clip["frames"], bare):
        assert np.array_equal(before, after)


def test_a_tracked_face_listed_over_fewer_frames_is_masked_only_there(clip, tmp_path):
    short = copy.deepcopy(clip["doc"])
    t = short["tracks"][0]
    t["last"], t["boxes"] = 3, {"0": t["boxes"]["0"]}
    r = invoke("run", "mask", clip["path"], "-o", tmp_path, "--faces", _write(tmp_path, short))
    assert r.exit_code == 0, r.output
    masked = decode(tmp_path / "clip.masked.mkv")
    box = record_box(t["boxes"]["0"])
    assert all(not np.array_equal(_box_pixels(a, box), _box_pixels(b, box)) for a, b in zip(clip["frames"][:4], masked[:4]))
    assert all(np.array_equal(a, b) for a, b in zip(clip["frames"][4:], masked[4:]))


def test_a_track_added_by_hand_is_masked_in_its_frames_and_extracted(clip, tmp_path):
    """The detectors blinded, the face is listed by hand over frames 1..6 with boxes at those two frames."""
    tracked = clip["doc"]["tracks"][0]
    hand = copy.deepcopy(clip["doc"])
    keys = {f: [int(v) for v in np.array(track_box(tracked, f))[[1, 0, 3, 2]]] for f in (1, 6)}  # [x0, y0, x1, y1]
    hand["tracks"] = [{"id": 3, "first": 1, "last": 6, "boxes": {str(f): b for f, b in keys.items()}}]
    out = tmp_path / "out"
    r = invoke("run", "mask", clip["path"], "-o", out, "--faces", _write(tmp_path, hand), "--json", *BLIND)
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.splitlines()[-1])
    assert any("1 track(s) added" in n for n in row["notes"]) and row["report"]["video"]["tracking"]["tracks"] == 0
    masked = decode(out / "clip.masked.mkv")
    for i, (before, after) in enumerate(zip(clip["frames"], masked)):
        box = track_box(hand["tracks"][0], i)
        if 1 <= i <= 6:
            assert not np.array_equal(_box_pixels(before, box), _box_pixels(after, box)), i
        else:  # outside its frames the face is bare
            assert np.array_equal(before, after), i
    rec = tmp_path / "rec.mkv"
    r = invoke("extract", out / "clip.masked.mkv", "--aux", out / "clip.aux.safetensors", "-o", rec)
    assert r.exit_code == 0, r.output
    for before, back in zip(clip["frames"], decode(rec)):
        assert np.array_equal(before, back)


def _edit(doc: dict, case: str) -> dict:
    doc = copy.deepcopy(doc)
    t = doc["tracks"][0]
    if case == "outside":
        t["boxes"]["0"] = [100, 100, 170, 150]
    elif case == "zero area":
        t["boxes"]["0"] = [50, 50, 50, 90]
    elif case == "frame out of range":
        t["last"], t["boxes"]["8"] = 8, t["boxes"]["7"]
    elif case == "first after last":
        t["first"], t["last"], t["boxes"] = 5, 2, {"5": t["boxes"]["0"]}
    elif case == "last out of range":
        t["last"] = 9
    elif case == "id twice":
        doc["tracks"].append(dict(t))
    elif case == "key frame outside its frames":
        t["last"] = 6
    elif case == "unknown key":
        t["frames"] = 8
    elif case == "photo file":
        doc = {"schema": SCHEMA, "photo": {"name": "a.png", "width": 160, "height": 160, "sha256": "0" * 64}, "faces": []}
    return doc


@pytest.mark.parametrize("case, message", [
    ("other clip", "for another clip"),
    ("invalid", "not valid JSON"),
    ("outside", "lies outside the 160x160 frame"),
    ("zero area", "has zero area"),
    ("frame out of range", "out of range (the clip has 8 frames"),
    ("first after last", "comes after"),
    ("photo file", "a photo's faces file"),
    ("last out of range", "\"last\" 9 is out of range"),
    ("id twice", "track id 0 is listed twice"),
    ("key frame outside its frames", "the box at frame 7 lies outside its frames 0 to 6"),
    ("unknown key", "unknown key(s) frames"),
])
def test_a_bad_clip_faces_file_exits_2_and_writes_nothing(clip, tmp_path, case, message):
    path = tmp_path / "bad.faces.json"
    if case == "other clip":  # the faces file of a clip one frame shorter
        from imnkit.imageio import load_image

        other = tmp_path / "other.mkv"
        make_clip(other, load_image(EXAMPLE), frames=7, size=(160, 160), sound=None, codec="ffv1")
        assert invoke("faces", other, "-o", tmp_path).exit_code == 0
        path = tmp_path / "other.faces.json"
    else:
        path.write_text('{"schema": "imnkit.faces/1", "tracks": [' if case == "invalid" else json.dumps(_edit(clip["doc"], case)))
    out = tmp_path / "out"
    r = invoke("run", "mask", clip["path"], "-o", out, "--faces", path)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and r.stderr.count("error:") == 1
    assert not out.exists()
