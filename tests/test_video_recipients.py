"""Clips masked for recipients: the aux rides inside the masked Matroska file as an attachment.

Needs PyAV (imnkit[video]); skips without it. Small lossless clips (8 frames, 160x160) of examples/astronaut.jpg.
"""

from __future__ import annotations

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
