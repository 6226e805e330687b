"""Clips masked for recipients: the aux rides inside the masked Matroska file as an attachment.

Needs PyAV (imnkit[video]); skips without it. Small lossless clips (8 frames, 160x160) of examples/astronaut.jpg.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imnkit.bundle import Bundle
from imnkit.cli import app
from imnkit.imageio import load_image
from imnkit.protect.crypto import AUTH_FAILED
from imnkit.protect.keys import KeySource
from imnkit.protect.recipients import parse_recipient

pytest.importorskip("av", reason="PyAV (imnkit[video]) is not installed")

from test_video import decode, make_clip, same_timing, stream_facts, timeline  # noqa: E402

from imnkit.video.attachment import MIMETYPE, NAME, attach, attached_aux  # noqa: E402
from imnkit.video.io import sound_packets, video_timestamps  # noqa: E402
from imnkit.video.mask import video_outputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "astronaut.jpg"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Two identities as `imnkit keygen --identity` writes them; their recipient strings."""
    folder = tmp_path_factory.mktemp("ids")
    out = {}
    for name in ("alice", "eve"):
        r = invoke("keygen", "--identity", folder / f"{name}.key")
        assert r.exit_code == 0, r.stderr
        out[name] = (folder / f"{name}.key", r.stdout.strip())
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "clip.mp4"
    make_clip(path, load_image(EXAMPLE), frames=8, size=(160, 160), sound="aac", codec="ffv1")
    return path


@pytest.fixture(scope="module")
def masked(people, clip, tmp_path_factory):
    """`imnkit run mask clip.mp4 --recipient alice`: the output folder."""
    out = tmp_path_factory.mktemp("masked")
    r = invoke("run", "mask", clip, "-o", out, "--recipient", people["alice"][1])
    assert r.exit_code == 0, r.stderr
    return out


def attachment_streams(path: Path) -> list[dict]:
    import av

    with av.open(str(path)) as c:
        return [dict(s.metadata) for s in c.streams.attachments]


def without_attachment(src: Path, dst: Path) -> None:
    """Copy the video and sound packets of ``src`` into ``dst`` (a remux that keeps only audio and video)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", format="matroska") as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type in ("video", "audio")}
        for p in i.demux(*[s for s in i.streams if s.index in streams]):
            if p.size:
                p.stream = streams[p.stream.index]
                o.mux(p)


def test_a_clip_masked_for_a_recipient_is_one_file_that_opens_with_the_identity_alone(people, clip, masked, tmp_path):
    assert sorted(p.name for p in masked.iterdir()) == ["clip.masked.mkv"]  # no aux file beside it
    mkv = masked / "clip.masked.mkv"
    assert attachment_streams(mkv) == [{"filename": NAME, "mimetype": MIMETYPE}]
    aux = Bundle.from_bytes(attached_aux(mkv), framework="numpy")
    assert aux.meta["aux.video"]["key"]["wrap"] == "recipients" and "aux.key" not in aux.tensors
    # the attachment changed neither the frames' timing nor the sound, and the frames are masked
    assert same_timing(mkv, clip) and sound_packets(mkv) == sound_packets(clip)
    assert not any(np.array_equal(a, b) for a, b in zip(decode(mkv), decode(clip)))
    # a copy elsewhere, alone: the identity is all it needs
    alone = tmp_path / "elsewhere" / "copy.masked.mkv"
    alone.parent.mkdir()
    shutil.copy(mkv, alone)
    r = invoke("extract", alone, "--identity", people["alice"][0])
    assert r.exit_code == 0, r.stderr
    recovered = tmp_path / "elsewhere" / "copy.recovered.mkv"
    assert all(np.array_equal(a, b) for a, b in zip(decode(recovered), decode(clip)))
    assert len(decode(recovered)) == 8 and same_timing(recovered, clip)
    assert sound_packets(recovered) == sound_packets(clip)
    assert recovered.stat().st_mode & 0o777 == 0o600


def test_a_wrong_identity_an_edited_or_a_foreign_attachment_is_refused(people, clip, masked, tmp_path):
    mkv = masked / "clip.masked.mkv"
    out = tmp_path / "r.mkv"
    r = invoke("extract", mkv, "--identity", people["eve"][0], "-o", out)
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists()

    raw = attached_aux(mkv)
    timestamps = video_timestamps(mkv)[0]
    other = tmp_path / "other"  # the same clip masked again with another Mask: another clip id, key and pixels
    assert invoke("run", "mask", clip, "-o", other, "--recipient", people["alice"][1], "--seed", "7").exit_code == 0
    assert not np.array_equal(decode(other / "clip.masked.mkv")[0], decode(mkv)[0])
    edited = bytearray(raw)
    edited[-5] ^= 1  # in the last tensor's bytes
    clip_id = Bundle.from_bytes(raw, framework="numpy").meta["aux.video"]["clip"]
    renamed = clip_id[:-1] + ("0" if clip_id[-1] != "0" else "1")  # valid JSON, every mention of the clip id
    cases = {"edited": bytes(edited), "foreign": attached_aux(other / "clip.masked.mkv"), "garbage": b"\x00" * 64,
             "renamed": raw.replace(clip_id.encode(), renamed.encode())}
    assert Bundle.from_bytes(cases["renamed"], framework="numpy").meta["aux.video"]["clip"] == renamed
    for name, data in cases.items():
        bad = tmp_path / f"{name}.masked.mkv"
        attach(mkv, bad, data, timestamps)
        r = invoke("extract", bad, "--identity", people["alice"][0], "-o", out)
        assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not out.exists(), name
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind


def test_sidecar_also_writes_the_aux_which_opens_a_copy_that_lost_the_attachment(people, clip, tmp_path):
    out = tmp_path / "out"
    r = invoke("run", "mask", clip, "-o", out, "--recipient", people["alice"][1], "--sidecar")
    assert r.exit_code == 0, r.stderr
    mkv, aux = out / "clip.masked.mkv", out / "clip.aux.safetensors"
    assert sorted(p.name for p in out.iterdir()) == ["clip.aux.safetensors", "clip.masked.mkv"]
    assert aux.read_bytes() == attached_aux(mkv) and aux.stat().st_mode & 0o777 == 0o600

    stripped = tmp_path / "stripped.masked.mkv"  # e.g. a remux that keeps only audio and video
    without_attachment(mkv, stripped)
    assert attachment_streams(stripped) == [] and attached_aux(stripped) is None
    rec = tmp_path / "stripped.recovered.mkv"
    r = invoke("extract", stripped, "--identity", people["alice"][0])
    assert r.exit_code == 2 and "carries no aux" in r.stderr and not rec.exists()
    r = invoke("extract", stripped, "--aux", aux, "--identity", people["alice"][0])
    assert r.exit_code == 0, r.stderr
    assert all(np.array_equal(a, b) for a, b in zip(decode(rec), decode(clip))) and len(decode(rec)) == 8


def test_a_phone_clip_keeps_its_rotation_and_uneven_times_through_the_attachment(people, tmp_path):
    """Stored turned, odd sides, a variable frame rate, PCM sound: the second muxing pass keeps them all."""
    from _photos import photo

    clip = tmp_path / "phone.mkv"
    pts = [0, 40, 80, 130, 170, 230, 270, 330]
    make_clip(clip, photo("portrait_01.jpg"), frames=len(pts), size=(171, 151), rotation=90, pts=pts,
              sound="pcm_s16le", codec="ffv1")
    out = tmp_path / "out"
    r = invoke("run", "mask", clip, "-o", out, "--recipient", people["alice"][1])
    assert r.exit_code == 0, r.stderr
    mkv = out / "phone.masked.mkv"
    assert stream_facts(mkv) == {"codec": "ffv1", "size": (171, 151), "rotation": 90}
    assert same_timing(mkv, clip) and len(set(np.diff(timeline(clip)).round(3))) > 1
    assert sound_packets(mkv) == sound_packets(clip)
    r = invoke("extract", mkv, "--identity", people["alice"][0])
    assert r.exit_code == 0, r.stderr
    rec = out / "phone.recovered.mkv"
    assert all(np.array_equal(a, b) for a, b in zip(decode(rec), decode(clip))) and len(decode(rec)) == len(pts)
    assert stream_facts(rec)["rotation"] == 90 and same_timing(rec, clip)


def test_only_an_aux_sealed_to_recipients_rides_inside(people, tmp_path):
    inp = tmp_path / "c.mp4"
    recipient = parse_recipient(people["alice"][1])
    names = lambda keys, **o: [p.name for p in video_outputs(inp, None, {"keys": keys, **o})]  # noqa: E731
    assert names(None) == ["c.masked.mkv", "c.aux.safetensors"]  # a bare key never travels with the clip
    assert names(KeySource(passphrase="a clip passphrase nobody guesses")) == ["c.masked.mkv", "c.aux.safetensors"]
    assert names(KeySource(recipients=[recipient])) == ["c.masked.mkv"]
    assert names(KeySource(recipients=[recipient]), sidecar=True, share_copy=True) == \
        ["c.masked.mkv", "c.aux.safetensors", "c.masked.mp4"]


# -- one tracked person at a time -------------------------------------------------------------------
def two_people_clip(path: Path, frames: int = 8, side: int = 144) -> list[np.ndarray]:
    """Two portraits side by side, drifting a pixel per frame: two tracked people. Returns the frames."""
    import av
    from PIL import Image

    from _photos import photo
    from imnkit.face.detect import detect_faces

    halves = []
    for name in ("portrait_01.jpg", "portrait_08.jpg"):
        img = photo(name)
        y0, x0, y1, x1 = detect_faces(img, detector="dlib", try_rotations=False).faces[0].box
        cy, cx, s = (y0 + y1) // 2, (x0 + x1) // 2, int(1.6 * max(y1 - y0, x1 - x0))
        crop = img[max(0, cy - s // 2):cy + s // 2, max(0, cx - s // 2):cx + s // 2]
        halves.append(np.asarray(Image.fromarray(crop).resize((side, side), Image.Resampling.LANCZOS)))
    base = np.concatenate(halves, axis=1)
    written = []
    with av.open(str(path), "w") as out:
        v = out.add_stream("ffv1", rate=24)
        v.width, v.height, v.pix_fmt = 2 * side, side, "bgr0"
        for i in range(frames):
            img = np.ascontiguousarray(np.roll(base, i, axis=1))
            written.append(img)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr0")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return written


def test_face_n_takes_off_one_tracked_person_in_every_frame_and_leaves_the_other_masked(people, tmp_path):
    clip = tmp_path / "two.mkv"
    original = two_people_clip(clip)
    out = tmp_path / "out"
    r = invoke("run", "mask", clip, "-o", out, "--recipient", people["alice"][1])
    assert r.exit_code == 0, r.stderr
    mkv = out / "two.masked.mkv"
    aux = Bundle.from_bytes(attached_aux(mkv), framework="numpy")
    tracks = aux.meta["aux.video"]["tracks"]
    assert [(t["track"], t["first"], t["last"], t["frames"]) for t in tracks] == [(0, 0, 7, 8), (1, 0, 7, 8)]
    r = invoke("inspect", mkv, "--json")  # the tracks, from the clip itself; the sealed key by its size only
    assert r.exit_code == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["tracks"] == tracks and shown["aux_inside"] is True
    sealed = aux.meta["aux.video"]["key"]["recipients"][0]["sealed"]
    assert sealed not in r.stdout and "<sealed key, " in r.stdout
    assert "tracked faces" in invoke("inspect", mkv).stdout
    masked = decode(mkv)
    full = tmp_path / "full.mkv"
    assert invoke("extract", mkv, "--identity", people["alice"][0], "-o", full).exit_code == 0
    whole = decode(full)
    assert all(np.array_equal(a, b) for a, b in zip(whole, original))
    for n in (0, 1):
        one = tmp_path / f"face{n}.mkv"
        log = tmp_path / "audit.jsonl"
        r = invoke("extract", mkv, "--identity", people["alice"][0], "--face", n, "-o", one, "--audit-log", log)
        assert r.exit_code == 0, r.stderr
        assert f"tracked face(s) {n} of 2 taken off" in r.stderr
        for f, (got, m, w) in enumerate(zip(decode(one), masked, whole)):
            regions = aux.meta["aux.frames"][f]["header"]["regions"]
            owners = aux.meta["aux.frames"][f]["tracks"]
            assert sorted(sum(owners, [])) == [0, 1] and all(len(o) == 1 for o in owners)  # apart: one each
            inside = np.zeros(m.shape[:2], bool)
            for (y0, x0, y1, x1), who in zip(regions, owners):
                sl = (slice(y0, y1), slice(x0, x1))
                # the face asked for: exactly the full extract's; the other: exactly the masked frame's
                assert np.array_equal(got[sl], (w if who == [n] else m)[sl]), (n, f, who)
                inside[sl] = True
            assert np.array_equal(got[~inside], m[~inside])  # outside the faces: the masked frame
            assert not np.array_equal(got, m) and not np.array_equal(got, w)
    r = invoke("extract", mkv, "--identity", people["alice"][0], "--face", 2, "-o", tmp_path / "no.mkv")
    assert r.exit_code == 2 and "no tracked face 2" in r.stderr and not (tmp_path / "no.mkv").exists()
    r = invoke("extract", mkv, "--identity", people["alice"][0], "--face-at", "10,10", "-o", tmp_path / "no.mkv")
    assert r.exit_code == 2 and not (tmp_path / "no.mkv").exists()
    r = invoke("extract", mkv, "--identity", people["eve"][0], "--face", 0, "-o", tmp_path / "no.mkv")
    assert r.exit_code == 4 and not (tmp_path / "no.mkv").exists()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [entry["faces"] for entry in lines] == [[0], [1]]


def _as_format_2(raw: bytes, identity: Path) -> bytes:
    """A format-3 clip aux rewritten as imnkit wrote format 2 (no tracks), the manifest sealed again under
    the clip's key (which only a holder of that key can do)."""
    from imnkit.protect import crypto
    from imnkit.protect.keyed import associated_data
    from imnkit.protect.keys import bytes_tensor, unlock_key
    from imnkit.protect.recipients import read_identity

    bundle = Bundle.from_bytes(raw, framework="numpy")
    header, frames = dict(bundle.meta["aux.video"]), [dict(f) for f in bundle.meta["aux.frames"]]
    key = unlock_key(header["key"], bundle.tensors, KeySource(identities=[read_identity(identity)]))
    for record in frames:
        del record["tracks"]
    del header["tracks"]
    header["format"] = 2
    digest = hashlib.sha256(associated_data({"frames": frames})).digest()
    nonce = crypto.new_nonce()
    header["manifest_nonce"] = nonce.hex()
    _, sealed = crypto.seal(crypto.subkey(key, "imnkit.video-manifest"), digest, associated_data(header), nonce)
    meta = {**bundle.meta, "aux.format": 2, "aux.video": header, "aux.frames": frames}
    return Bundle(tensors={**bundle.tensors, "aux.manifest": bytes_tensor(sealed)}, meta=meta).to_bytes()


def test_a_format_2_aux_still_opens_whole_but_not_one_face_at_a_time(people, clip, masked, tmp_path):
    mkv = masked / "clip.masked.mkv"
    old = tmp_path / "old.masked.mkv"
    attach(mkv, old, _as_format_2(attached_aux(mkv), people["alice"][0]), video_timestamps(mkv)[0])
    rec = tmp_path / "old.recovered.mkv"
    r = invoke("extract", old, "--identity", people["alice"][0], "--face", 0)
    assert r.exit_code == 2 and "before tracked faces were recorded" in r.stderr and not rec.exists()
    r = invoke("extract", old, "--identity", people["alice"][0])
    assert r.exit_code == 0, r.stderr
    assert all(np.array_equal(a, b) for a, b in zip(decode(rec), decode(clip)))


def test_a_region_shared_with_someone_not_asked_for_stays_masked():
    """Faces that overlap are hidden in one merged region: it comes off only when all its people are asked for."""
    from imnkit.video.aux import OpenedAux

    opened = OpenedAux.__new__(OpenedAux)  # the state a manifest that authenticated leaves (no crypto needed here)
    opened.frames = [{"header": {"regions": [[0, 0, 8, 8], [0, 10, 8, 18], [10, 0, 18, 8]]},
                      "tracks": [[0], [1, 2], []]}]
    assert opened.regions_of(0, {0}) == ([0], 0)
    assert opened.regions_of(0, {1}) == ([], 1)
    assert opened.regions_of(0, {1, 2}) == ([1], 0)
    assert opened.regions_of(0, {0, 1, 2}) == ([0, 1], 0)


def test_one_tracked_person_has_one_face_key_in_every_frame(people, tmp_path):
    """Each frame's regions are labelled by track in the authenticated frame header (face key = HKDF(content
    key, 'imnkit.face/t{N}')): the same key for track N in every frame, another for each other track."""
    from imnkit.protect.keyed import face_key
    from imnkit.protect.recipients import read_identity
    from imnkit.video.aux import OpenedAux, face_labels

    clip = tmp_path / "two.mkv"
    two_people_clip(clip, frames=4)
    out = tmp_path / "out"
    assert invoke("run", "mask", clip, "-o", out, "--recipient", people["alice"][1]).exit_code == 0
    mkv = out / "two.masked.mkv"
    raw = attached_aux(mkv)
    aux = Bundle.from_bytes(raw, framework="numpy")
    labels = [f["header"]["face_labels"] for f in aux.meta["aux.frames"]]
    assert labels == [face_labels(f["tracks"]) for f in aux.meta["aux.frames"]] == [["t0", "t1"]] * 4
    opened = OpenedAux(aux, KeySource(identities=[read_identity(people["alice"][0])]))
    assert face_key(opened.key, "t0") != face_key(opened.key, "t1") != face_key(opened.key, 0)
    # the labels are authenticated: frame 0's two labels swapped no longer opens
    swapped = raw.replace(b'\\"face_labels\\": [\\"t0\\", \\"t1\\"]', b'\\"face_labels\\": [\\"t1\\", \\"t0\\"]', 1)
    assert swapped != raw
    edited = tmp_path / "edited.masked.mkv"
    attach(mkv, edited, swapped, video_timestamps(mkv)[0])
    r = invoke("extract", edited, "--identity", people["alice"][0], "-o", tmp_path / "no.mkv")
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not (tmp_path / "no.mkv").exists()


# -- rekey ------------------------------------------------------------------------------------------------
def test_rekey_a_clip_and_its_sidecar_changes_no_frame_and_shuts_out_the_old_identity(people, clip, tmp_path):
    out = tmp_path / "out"
    assert invoke("run", "mask", clip, "-o", out, "--recipient", people["alice"][1], "--sidecar").exit_code == 0
    mkv, aux = out / "clip.masked.mkv", out / "clip.aux.safetensors"
    frames, times, sound = decode(mkv), video_timestamps(mkv), sound_packets(mkv)
    before = mkv.read_bytes()
    r = invoke("rekey", mkv, "--identity", people["eve"][0], "--recipient", people["eve"][1])  # eve cannot open it
    assert r.exit_code == 4 and AUTH_FAILED in r.stderr and mkv.read_bytes() == before
    log = tmp_path / "audit.jsonl"
    r = invoke("rekey", out, "--identity", people["alice"][0], "--recipient", people["eve"][1], "--audit-log", log)
    assert r.exit_code == 0, r.stderr
    assert mkv.read_bytes() != before and len(log.read_text().splitlines()) == 2  # the clip and its sidecar
    assert all(np.array_equal(a, b) for a, b in zip(decode(mkv), frames))  # not one pixel changed
    assert len(decode(mkv)) == len(frames) and video_timestamps(mkv) == times and sound_packets(mkv) == sound
    assert mkv.stat().st_mode & 0o777 == 0o644 and aux.stat().st_mode & 0o777 == 0o600
    for source in ([], ["--aux", aux]):  # the attachment, and the sidecar: alice is out, eve is in
        rec = tmp_path / "rec.mkv"
        r = invoke("extract", mkv, *source, "--identity", people["alice"][0], "-o", rec)
        assert r.exit_code == 4 and AUTH_FAILED in r.stderr and not rec.exists()
        r = invoke("extract", mkv, *source, "--identity", people["eve"][0], "-o", rec)
        assert r.exit_code == 0, r.stderr
        assert all(np.array_equal(a, b) for a, b in zip(decode(rec), decode(clip))) and len(decode(rec)) == 8
        rec.unlink()
