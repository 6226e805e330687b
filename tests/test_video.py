"""Video: `imnkit run` / `imnkit extract` on clips the tests make (a moving crop of a portrait + a tone).

Needs PyAV (imnkit[video]); the clip tests skip without it. The portraits come from ../shared/data/faces.
"""

from __future__ import annotations

import hashlib
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imnkit.cli import app
from imnkit.protect.crypto import AUTH_FAILED

REPO = Path(__file__).resolve().parents[1]
SECRET = "a clip passphrase nobody guesses"
PORTRAIT = "portrait_01.jpg"


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _av():
    return pytest.importorskip("av", reason="PyAV (imnkit[video]) is not installed")


def make_clip(path: Path, photo: np.ndarray, *, frames: int = 32, size: tuple[int, int] = (256, 256), rate: int = 24,
              sound: str | None = "aac", rotation: int = 0, pts=None, codec: str = "libx264") -> list[np.ndarray]:
    """Write a clip panning over the face of ``photo``; returns the upright frames as written (RGB).

    ``rotation``: display rotation metadata (the frames are stored turned the other way, as a phone does);
    ``pts``: explicit timestamps in 1/1000 s (a variable frame rate); ``codec``: libx264 or ffv1 (lossless).
    """
    av = _av()
    from PIL import Image

    from imnkit.face.detect import detect_faces

    y0, x0, y1, x1 = detect_faces(photo, detector="dlib", try_rotations=False).faces[0].box
    cy, cx, side = (y0 + y1) / 2, (x0 + x1) / 2, int(2.4 * max(y1 - y0, x1 - x0))
    out = av.open(str(path), "w")
    v = out.add_stream(codec, rate=rate)
    h, w = size
    v.width, v.height = (w, h) if rotation % 180 == 0 else (h, w)
    v.pix_fmt = "yuv420p" if codec == "libx264" else "bgr0"
    if pts is not None:
        v.codec_context.time_base = Fraction(1, 1000)
    if rotation:
        v.set_display_rotation(rotation)
    a = out.add_stream(sound, rate=22050, layout="mono") if sound else None
    written = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        top, left = int(cy - side * (0.5 + 0.05 * (t - 0.5))), int(cx - side * (0.5 + 0.15 * (t - 0.5)))
        crop = Image.fromarray(photo[max(0, top):top + side, max(0, left):left + side])
        img = np.asarray(crop.resize((w, h), Image.Resampling.LANCZOS))
        written.append(img)
        stored = np.ascontiguousarray(np.rot90(img, -(rotation // 90))) if rotation else img
        frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
        frame.pts = i if pts is None else pts[i]
        if pts is not None:
            frame.time_base = Fraction(1, 1000)
        out.mux(v.encode(frame if codec == "libx264" else frame.reformat(format="bgr0")))
    out.mux(v.encode(None))
    if a is not None:
        n, step = 22050 * frames // rate, 1024
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 22050)
        for k in range(0, n, step):
            chunk = tone[k:k + step][None, :]
            if sound == "aac":
                af = av.AudioFrame.from_ndarray(chunk.astype(np.float32), format="fltp", layout="mono")
            else:
                af = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16), format="s16", layout="mono")
            af.sample_rate, af.pts = 22050, k
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    out.close()
    return written


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a clip as stored (RGB, not turned)."""
    av = _av()
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def stream_facts(path: Path) -> dict:
    av = _av()
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        first = next(c.decode(vs))
        return {"codec": vs.codec_context.name, "size": (vs.width, vs.height), "rotation": int(first.rotation or 0)}


def timeline(path: Path) -> np.ndarray:
    """Each frame's time after the first, in seconds."""
    from imnkit.video.io import frame_times

    t = np.array(frame_times(path))
    return t - t[0]


def same_timing(a: Path, b: Path) -> bool:
    """Same frame count and times within Matroska's millisecond resolution."""
    ta, tb = timeline(a), timeline(b)
    return len(ta) == len(tb) and float(np.abs(ta - tb).max()) <= 0.0011


# -- no PyAV needed ---------------------------------------------------------------------------------
def test_folders_pick_up_videos(tmp_path):
    from imnkit.recipe import expand_inputs
    from imnkit.video import is_video_path

    for name in ("a.mp4", "b.MOV", "c.mkv", "d.txt", "e.png"):
        (tmp_path / name).write_bytes(b"x")
    found = sorted(p.name for p in expand_inputs([str(tmp_path)]))
    assert found == ["a.mp4", "b.MOV", "c.mkv", "e.png"]
    assert is_video_path("x.WEBM") and not is_video_path("x.png")


def test_a_video_without_the_extra_is_a_usage_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not looked at")
    r = invoke("run", "mask", clip, "-o", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "imnkit[video]" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out" / "clip.masked.mkv").exists()


def test_inn_is_refused_for_video(tmp_path):
    _av()
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not looked at")
    r = invoke("run", REPO / "recipes" / "mask-inn.toml", clip, "-o", tmp_path / "out")
    assert r.exit_code == 2 and "inn" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, bytes(range(256)) * 40])
def test_a_corrupt_video_is_a_clear_error_and_nothing_is_written(tmp_path, content):
    _av()
    clip = tmp_path / "broken.mp4"
    clip.write_bytes(content)
    out = tmp_path / "out"
    r = invoke("run", "mask", clip, "-o", out)
    assert r.exit_code == 1, r.output
    assert "broken.mp4" in r.output and ("corrupt" in r.output or "not a video" in r.output)
    assert "Traceback" not in r.output
    assert not out.exists() or not any(out.iterdir())


def test_a_truncated_clip_or_one_without_video_is_a_clear_error(tmp_path):
    av = _av()
    from _photos import photo

    whole = tmp_path / "whole.mkv"
    make_clip(whole, photo(PORTRAIT), frames=24, size=(96, 96), sound=None, codec="ffv1")
    data = whole.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])  # Matroska: the header's duration says how much is missing
    sound_only = tmp_path / "sound.mp4"
    with av.open(str(sound_only), "w") as out:
        a = out.add_stream("aac", rate=22050, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 22050, 0
        out.mux(a.encode(frame))
        out.mux(a.encode(None))
    for clip, words in ((cut, "truncated"), (sound_only, "no video stream")):
        out = tmp_path / f"out-{clip.stem}"
        r = invoke("run", "mask", clip, "-o", out, "--allow-no-face")
        assert r.exit_code == 1 and words in r.output and "Traceback" not in r.output, r.output
        assert not out.exists() or not any(out.iterdir())


def test_a_clip_without_any_face_exits_3_unless_allowed(tmp_path):
    av = _av()
    clip = tmp_path / "sky.mkv"
    ramp = np.linspace(0, 255, 72 * 64, dtype=np.uint8).reshape(72, 64)
    frames = [np.stack([np.roll(ramp, i, axis=1)] * 3, axis=2) for i in range(10)]
    with av.open(str(clip), "w") as out:
        v = out.add_stream("ffv1", rate=10)
        v.width, v.height, v.pix_fmt = 64, 72, "bgr0"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr0")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    r = invoke("run", "mask", clip, "-o", tmp_path / "a")
    assert r.exit_code == 3 and "no face found" in r.output and not (tmp_path / "a").exists()
    r = invoke("run", "mask", clip, "-o", tmp_path / "b", "--allow-no-face")
    assert r.exit_code == 0, r.output
    assert all(np.array_equal(a, b) for a, b in zip(frames, decode(tmp_path / "b" / "sky.masked.mkv")))


# -- a real clip ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def masked_clip(tmp_path_factory):
    """A 32-frame clip with a tone, masked with a passphrase; and its recovery."""
    _av()
    from _photos import photo

    root = tmp_path_factory.mktemp("video")
    clip = root / "clip.mp4"
    original = make_clip(clip, photo(PORTRAIT))
    pp = root / "pp.txt"
    pp.write_text(SECRET + "\n")
    out = root / "out"
    r = invoke("run", "mask", clip, "-o", out, "--passphrase-file", pp, "--json", "--share-copy")
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.strip().splitlines()[-1])
    masked, aux = out / "clip.masked.mkv", out / "clip.aux.safetensors"
    rec = root / "clip.recovered.mkv"
    r2 = invoke("extract", masked, "--aux", aux, "-o", rec, "--passphrase-file", pp)
    assert r2.exit_code == 0, r2.output
    return {"clip": clip, "original": original, "decoded": decode(clip), "masked": masked, "aux": aux, "row": row,
            "recovered": rec, "pp": pp, "root": root}


@pytest.mark.slow
def test_masked_clip_keeps_frames_timing_size_and_sound(masked_clip):
    from imnkit.video.io import sound_packets

    clip, masked = masked_clip["clip"], masked_clip["masked"]
    frames = decode(masked)
    assert len(frames) == len(masked_clip["decoded"]) == 32
    assert stream_facts(masked) == {"codec": "ffv1", "size": (256, 256), "rotation": 0}
    assert same_timing(masked, clip)  # same timestamps (Matroska keeps milliseconds)
    sound = sound_packets(clip)
    assert len(sound) > 10 and sound_packets(masked) == sound  # copied, not re-encoded
    assert sound_packets(masked_clip["recovered"]) == sound
    share = masked_clip["masked"].with_suffix(".mp4")
    assert stream_facts(share)["codec"] == "h264" and len(decode(share)) == 32 and sound_packets(share) == sound
    video = masked_clip["row"]["report"]["video"]
    assert video["frames"] == 32 and video["tracking"]["tracks"] == 1 and len(video["identities"]) == 1
    assert SECRET not in json.dumps(masked_clip["row"])


@pytest.mark.slow
def test_the_face_is_replaced_in_every_frame_by_one_identity(masked_clip):
    from imnkit.face.descriptors import descriptor_distance, face_descriptor
    from imnkit.face.detect import detect_faces

    mine, masks = [], []
    for orig, masked in zip(masked_clip["decoded"], decode(masked_clip["masked"])):
        face = detect_faces(orig, detector="dlib", upsample=0, try_rotations=False).faces[0]
        mine.append(face_descriptor(orig, face))
        masks.append(face_descriptor(masked, face))
    to_original = [descriptor_distance(a, b) for a, b in zip(mine, masks)]
    centre = np.mean(masks, axis=0)
    spread = [descriptor_distance(m, centre) for m in masks]
    assert min(to_original) > 0.6, to_original  # another person in every frame (dlib: < 0.6 is the same)
    assert max(spread) < 0.3, spread  # ... and the same other person throughout


@pytest.mark.slow
def test_extract_gives_the_original_frames_back(masked_clip):
    from imnkit.metrics import psnr
    from imnkit.video.io import frame_times

    from imnkit.bundle import load_bundle

    masked, rec = decode(masked_clip["masked"]), decode(masked_clip["recovered"])
    assert len(rec) == 32 and frame_times(masked_clip["recovered"]) == frame_times(masked_clip["masked"])
    assert masked_clip["recovered"].stat().st_mode & 0o777 == 0o600  # the faces: private, as a recovered photo
    records = load_bundle(masked_clip["aux"]).meta["aux.frames"]
    worst = np.inf
    for orig, m, r, record in zip(masked_clip["decoded"], masked, rec, records):
        assert np.any(m != orig, axis=2).sum() > 500  # the face was masked in this frame
        (y0, x0, y1, x1), = record["header"]["regions"]  # the hidden region (face + margin)
        outside = np.ones(m.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(r[outside], m[outside])  # outside the faces: the masked frame, bit for bit
        worst = min(worst, psnr(r[y0:y1, x0:x1], orig[y0:y1, x0:x1]))
    assert worst > 38.0, worst  # sealed: the faces come back through AVIF at the carrier's capacity


@pytest.mark.slow
def test_wrong_passphrase_edited_frame_or_changed_aux_fail_authentication(masked_clip, tmp_path):
    av = _av()
    masked, aux = masked_clip["masked"], masked_clip["aux"]
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase\n")
    out = tmp_path / "rec.mkv"
    r = invoke("extract", masked, "--aux", aux, "-o", out, "--passphrase-file", wrong)
    assert r.exit_code == 4 and AUTH_FAILED in r.output and not out.exists()

    # One pixel of one frame changed, everything else (timestamps, sound) as written: refused.
    edited = tmp_path / "edited.mkv"
    with av.open(str(masked)) as src, av.open(str(edited), "w", format="matroska") as dst:
        vs = src.streams.video[0]
        ov = dst.add_stream("ffv1", rate=vs.average_rate)
        ov.width, ov.height, ov.pix_fmt = vs.width, vs.height, "bgr0"
        for i, f in enumerate(src.decode(vs)):
            img = f.to_ndarray(format="rgb24")
            if i == 20:
                img[0, 0, 0] ^= 1
            nf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr0")
            nf.pts, nf.time_base = f.pts, f.time_base
            dst.mux(ov.encode(nf))
        dst.mux(ov.encode(None))
    r = invoke("extract", edited, "--aux", aux, "-o", out, "--passphrase-file", masked_clip["pp"])
    assert r.exit_code == 4 and AUTH_FAILED in r.output and not out.exists()
    assert not list(tmp_path.glob(".rec.mkv*"))  # no temporary file left

    # The same frames and sound, every frame shown 1 ms later: the timestamps are authenticated too.
    retimed = tmp_path / "retimed.mkv"
    with av.open(str(masked)) as src, av.open(str(retimed), "w", format="matroska") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            if packet.stream.type == "video":
                packet.pts, packet.dts = packet.pts + 1, packet.dts + 1
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    same, frames = decode(retimed), decode(masked)
    assert len(same) == len(frames) == 32 and all(np.array_equal(a, b) for a, b in zip(same, frames))
    r = invoke("extract", retimed, "--aux", aux, "-o", out, "--passphrase-file", masked_clip["pp"])
    assert r.exit_code == 4 and AUTH_FAILED in r.output and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file or folder left

    # The aux with two frames' records swapped (each still authentic on its own): refused.
    from imnkit.bundle import load_bundle

    bundle = load_bundle(aux)
    frames = bundle.meta["aux.frames"]
    frames[3], frames[4] = frames[4], frames[3]
    swapped = tmp_path / "swapped.aux.safetensors"
    swapped.write_bytes(bundle.to_bytes())
    r = invoke("extract", masked, "--aux", swapped, "-o", out, "--passphrase-file", masked_clip["pp"])
    assert r.exit_code == 4 and AUTH_FAILED in r.output and not out.exists()


@pytest.mark.slow
def test_detached_share_copy_gives_the_faces_back_exactly(tmp_path):
    """The H.264 share copy is lossy: with `detached` (faces in the aux) extract still gives them back exactly."""
    _av()
    from _photos import photo

    from imnkit.bundle import load_bundle

    clip = tmp_path / "short.mkv"
    original = make_clip(clip, photo(PORTRAIT), frames=8, size=(160, 160), sound=None, codec="ffv1")
    out = tmp_path / "out"
    r = invoke("run", "mask", clip, "-o", out, "--set", "embed.method=detached", "--share-copy")
    assert r.exit_code == 0, r.output
    share, rec = out / "short.masked.mp4", tmp_path / "from-share.mkv"
    r = invoke("extract", share, "--aux", out / "short.aux.safetensors", "-o", rec)
    assert r.exit_code == 0 and "re-encoded copy" in r.output, r.output
    back, copy = decode(rec), decode(share)
    records = load_bundle(out / "short.aux.safetensors").meta["aux.frames"]
    assert len(back) == len(original) == 8
    for orig, b, c, record in zip(original, back, copy, records):
        (y0, x0, y1, x1), = record["header"]["regions"]
        assert np.array_equal(b[y0:y1, x0:x1], orig[y0:y1, x0:x1])  # the faces: exact
        outside = np.ones(b.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(b[outside], c[outside])  # the rest: the share copy's pixels


@pytest.mark.slow
def test_rotation_odd_size_variable_rate_and_pcm_sound(tmp_path):
    """A phone-like clip: stored turned, displayed upright, odd sides, uneven timestamps, PCM sound, lossless
    input; with `detached` the recovered frames are the input's exactly."""
    _av()
    from _photos import photo

    from imnkit.video.io import sound_packets

    clip = tmp_path / "phone.mkv"
    pts = [0, 40, 80, 130, 170, 230, 270, 310, 350, 400, 440, 480, 530, 570, 610, 660]
    make_clip(clip, photo(PORTRAIT), frames=len(pts), size=(241, 201), rotation=90, pts=pts, sound="pcm_s16le",
              codec="ffv1")
    out = tmp_path / "out"
    r = invoke("run", "mask", clip, "-o", out, "--set", "embed.method=detached", "--json")
    assert r.exit_code == 0, r.output
    video = json.loads(r.stdout.strip().splitlines()[-1])["report"]["video"]
    assert video["tracking"]["tracks"] == 1  # found upright: the rotation was applied before detection
    masked = out / "phone.masked.mkv"
    assert stream_facts(masked) == {"codec": "ffv1", "size": (241, 201), "rotation": 90}  # as stored
    assert same_timing(masked, clip) and len(set(np.diff(timeline(clip)).round(3))) > 1
    assert sound_packets(masked) == sound_packets(clip)
    rec = tmp_path / "phone.recovered.mkv"
    r = invoke("extract", masked, "--aux", out / "phone.aux.safetensors", "-o", rec)
    assert r.exit_code == 0, r.output
    original, back = decode(clip), decode(rec)
    assert len(back) == len(original)
    assert all(np.array_equal(a, b) for a, b in zip(original, back))  # detached, lossless: exact
    assert stream_facts(rec)["rotation"] == 90
    digest = hashlib.sha256(b"".join(f.tobytes() for f in decode(masked))).hexdigest()
    assert digest != hashlib.sha256(b"".join(f.tobytes() for f in original)).hexdigest()
