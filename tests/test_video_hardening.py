"""Video outputs against a careful attacker or an unlucky user (issue 26, items 1, 3 and 9).

Temporaries: a file or a symlink made in advance where the old writers put theirs (``.{name}.{pid}.tmp``)
changes nothing; a symlink at an output is refused. Recovered clips are 0600. An interrupted run or
extract (KeyboardInterrupt, SIGTERM) leaves no file. Each frame's timestamp is authenticated: a retimed
clip fails with the one message. ``--audio drop`` leaves the sound out.

The clips are tiny and have no face (``--allow-no-face``): every frame still goes through the keyed
writer and the manifest, in about a second. Needs PyAV (imnkit[video]).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imnkit.cli import app
from imnkit.protect.crypto import AUTH_FAILED

av = pytest.importorskip("av", reason="PyAV (imnkit[video]) is not installed")

REPO = Path(__file__).resolve().parents[1]
FRAMES, RATE = 8, 10


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def make_clip(path: Path, *, sound: bool = True) -> list[np.ndarray]:
    """An 8-frame 64x48 FFV1 clip (lossless, a moving ramp, no face) with a PCM tone; its frames."""
    ramp = np.linspace(0, 255, 48 * 64, dtype=np.uint8).reshape(48, 64)
    frames = [np.stack([np.roll(ramp, 5 * i, axis=1), ramp, np.flipud(ramp)], axis=2) for i in range(FRAMES)]
    with av.open(str(path), "w") as out:
        v = out.add_stream("ffv1", rate=RATE)
        v.width, v.height, v.pix_fmt = 64, 48, "bgr0"
        a = out.add_stream("pcm_s16le", rate=8000, layout="mono") if sound else None
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr0")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if a is not None:
            tone = (3000 * np.sin(np.arange(8000 * FRAMES // RATE) / 3)).astype(np.int16)
            for k in range(0, len(tone), 400):
                af = av.AudioFrame.from_ndarray(tone[None, k:k + 400], format="s16", layout="mono")
                af.sample_rate, af.pts = 8000, k
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return frames


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * Fraction(f.time_base) for f in c.decode(video=0)]


def audio_streams(path: Path) -> int:
    with av.open(str(path)) as c:
        return len(c.streams.audio)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def listing(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden ones included."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.mkv"
    make_clip(path)
    return path


def mask(clip: Path, out: Path, *extra) -> None:
    r = invoke("run", "mask", clip, "-o", out, "--allow-no-face", *extra)
    assert r.exit_code == 0, r.output


@pytest.fixture()
def masked(clip, tmp_path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    mask(clip, out)
    return out / "clip.masked.mkv", out / "clip.aux.safetensors"


def remux(src: Path, dst: Path, retime=lambda index, pts: pts) -> None:
    """Copy ``src``'s packets into ``dst`` as they are (same frames, same sound), video timestamps
    passed through ``retime(frame index, pts)``."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="matroska") as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type in ("video", "audio")}
        index = 0
        for packet in i.demux():
            if packet.dts is None or packet.stream.index not in streams:
                continue
            if packet.stream.type == "video":
                packet.pts = packet.dts = retime(index, packet.pts)
                index += 1
            packet.stream = streams[packet.stream.index]
            o.mux(packet)


# -- item 1: temporaries ------------------------------------------------------------------------------
def test_a_file_made_in_advance_at_the_old_temporary_name_changes_nothing(clip, tmp_path):
    """The old writers opened `.{name}.{pid}.tmp` without O_EXCL: a file made there first kept its mode
    (the aux, key inside, came out 0644) and was renamed onto the output."""
    out = tmp_path / "out"
    out.mkdir()
    planted = out / f".clip.aux.safetensors.{os.getpid()}.tmp"  # CliRunner: this process's pid
    planted.write_bytes(b"planted")
    planted.chmod(0o644)
    mask(clip, out)
    assert mode(out / "clip.aux.safetensors") == 0o600
    assert mode(out / "clip.masked.mkv") == 0o644
    assert planted.read_bytes() == b"planted"  # not opened, not renamed, not removed
    assert listing(out) == sorted(["clip.masked.mkv", "clip.aux.safetensors", planted.name])


def test_a_symlink_made_in_advance_at_the_old_temporary_name_overwrites_nothing(clip, masked, tmp_path):
    """The old writers (and PyAV) followed a symlink at `.{name}.{pid}.tmp`: the victim got the clip."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out2"
    out.mkdir()
    for name in ("clip.masked.mkv", "clip.aux.safetensors"):
        (out / f".{name}.{os.getpid()}.tmp").symlink_to(victim)
    mask(clip, out)
    assert victim.read_bytes() == b"precious"
    assert not (out / "clip.masked.mkv").is_symlink() and decode(out / "clip.masked.mkv")

    masked_clip, aux = masked
    rec = tmp_path / "rec" / "clip.recovered.mkv"
    rec.parent.mkdir()
    (rec.parent / f".{rec.name}.{os.getpid()}.tmp").symlink_to(victim)
    r = invoke("extract", masked_clip, "--aux", aux, "-o", rec)
    assert r.exit_code == 0, r.output
    assert victim.read_bytes() == b"precious"
    assert not rec.is_symlink() and mode(rec) == 0o600


def test_a_symlink_at_an_output_is_refused_even_with_overwrite(clip, masked, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out2"
    out.mkdir()
    (out / "clip.aux.safetensors").symlink_to(victim)
    r = invoke("run", "mask", clip, "-o", out, "--allow-no-face", "--overwrite")
    assert r.exit_code == 1 and "symbolic link" in r.output, r.output
    assert victim.read_bytes() == b"precious"
    assert listing(out) == ["clip.aux.safetensors"]  # the link only: nothing written beside it

    masked_clip, aux = masked
    rec = tmp_path / "rec.mkv"
    rec.symlink_to(tmp_path / "nowhere.mkv")  # dangling: would be created through the link
    r = invoke("extract", masked_clip, "--aux", aux, "-o", rec, "--overwrite")
    assert r.exit_code == 1 and "symbolic link" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "nowhere.mkv").exists()


# -- item 3: recovered clips --------------------------------------------------------------------------
def test_the_recovered_clip_is_private_and_the_masked_clip_shareable(masked, tmp_path):
    masked_clip, aux = masked
    rec = tmp_path / "rec.mkv"
    r = invoke("extract", masked_clip, "--aux", aux, "-o", rec)
    assert r.exit_code == 0, r.output
    assert mode(rec) == 0o600 and mode(masked_clip) == 0o644 and mode(aux) == 0o600


def test_an_interrupted_extract_or_run_leaves_no_file(clip, masked, tmp_path):
    from imnkit.recipe import Runner, load_recipe, resolve_recipe_path
    from imnkit.video.mask import mask_video
    from imnkit.video.unmask import extract_video

    masked_clip, aux = masked
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()

    def stop(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_video(masked_clip, aux, rec_dir / "clip.recovered.mkv", on_frame=stop)
    assert listing(rec_dir) == []

    runner = Runner(load_recipe(resolve_recipe_path("mask")), options={"allow_no_face": True})
    runner.options["on_frames"] = lambda phase, done, total: stop(done, total) if phase == "masking" else None
    out = tmp_path / "out2"
    with pytest.raises(KeyboardInterrupt):
        mask_video(runner, clip, out)
    assert listing(out) == []


_KILL_ITSELF = """
import os, signal, sys
from pathlib import Path

# As in a terminal: the signal at its default. A suite run under nohup hands SIGHUP down ignored,
# and imnkit rightly leaves an ignored signal ignored (the clip is then written whole).
signal.signal(int(sys.argv[5]), signal.SIG_DFL)

def kill(done):
    if done == 3:
        os.kill(os.getpid(), int(sys.argv[5]))

if sys.argv[1] == "extract":
    from imnkit.video.unmask import extract_video

    extract_video(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]) / "clip.recovered.mkv",
                  on_frame=lambda done, total: kill(done))
else:
    from imnkit.recipe import Runner, load_recipe, resolve_recipe_path
    from imnkit.video.mask import mask_video

    runner = Runner(load_recipe(resolve_recipe_path("mask")), options={"allow_no_face": True})
    runner.options["on_frames"] = lambda phase, done, total: kill(done) if phase == "masking" else None
    mask_video(runner, Path(sys.argv[2]), Path(sys.argv[4]))
"""


@pytest.mark.parametrize("command, sig", [("extract", signal.SIGTERM), ("run", signal.SIGTERM),
                                         ("extract", signal.SIGHUP)])
def test_an_extract_or_run_killed_with_sigterm_leaves_no_file(command, sig, clip, masked, tmp_path):
    """SIGTERM (or SIGHUP, a closed terminal) ends a process without running `finally` unless it is
    turned into an exception: the old extract left its temporary (the faces, in the clear) behind, the
    old run its clip and aux."""
    masked_clip, aux = masked
    out = tmp_path / "killed"
    out.mkdir()
    source = masked_clip if command == "extract" else clip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", _KILL_ITSELF, command, source, aux, out, str(int(sig))], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert listing(out) == []
    assert done.returncode == 128 + sig, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


# -- item 9: timing and sound -------------------------------------------------------------------------
def test_a_retimed_masked_clip_fails_authentication_and_writes_nothing(masked, tmp_path):
    masked_clip, aux = masked
    same = tmp_path / "remuxed.mkv"
    remux(masked_clip, same)  # the same packets and times in a new file: still recovers
    rec = tmp_path / "rec.mkv"
    r = invoke("extract", same, "--aux", aux, "-o", rec)
    assert r.exit_code == 0, r.output
    assert times(rec) == times(masked_clip) and len(times(rec)) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(decode(rec), decode(masked_clip)))

    for name, retime in (("shifted", lambda i, pts: pts + 1),  # every frame 1 ms later
                         ("late", lambda i, pts: pts + 500 if i >= 4 else pts),  # a pause put in
                         ("slow", lambda i, pts: 2 * pts)):  # slowed down
        edited = tmp_path / f"{name}.mkv"
        remux(masked_clip, edited, retime)
        assert [a == b for a, b in zip(times(edited), times(masked_clip))] != [True] * FRAMES
        assert all(np.array_equal(a, b) for a, b in zip(decode(edited), decode(masked_clip)))  # same frames
        out = tmp_path / f"{name}.recovered.mkv"
        r = invoke("extract", edited, "--aux", aux, "-o", out)
        assert r.exit_code == 4, (name, r.output)
        assert r.output.count(AUTH_FAILED) == 1 and "Traceback" not in r.output
        assert not out.exists() and not any(p.name.startswith(f".{out.name}") for p in tmp_path.iterdir())


def test_the_aux_seals_each_frames_timestamp(masked):
    from imnkit.bundle import load_bundle
    from imnkit.video.aux import VIDEO_AUX_FORMAT

    masked_clip, aux = masked
    meta = load_bundle(aux).meta
    header, records = meta["aux.video"], meta["aux.frames"]
    assert header["format"] == VIDEO_AUX_FORMAT >= 2  # 2: timestamps sealed (3: and which region holds whom)
    stored = [r["pts"] * Fraction(header["time_base"]) for r in records]
    assert stored == times(masked_clip)  # what a reader of the masked clip decodes, muxer's shift included


def _as_format_1(aux: Path, dst: Path) -> None:
    """Rewrite a bare (unlocked) format-2 video aux as imnkit wrote format 1: no timestamps, the manifest
    sealed again under the clip's key (which only its holder can do)."""
    from imnkit.bundle import Bundle
    from imnkit.protect import crypto
    from imnkit.protect.keyed import associated_data
    from imnkit.protect.keys import bytes_tensor, unlock_key

    bundle = Bundle.from_bytes(aux.read_bytes(), framework="numpy")
    header, frames = dict(bundle.meta["aux.video"]), [dict(f) for f in bundle.meta["aux.frames"]]
    key = unlock_key(header["key"], bundle.tensors, None)
    for record in frames:
        del record["pts"]
    del header["time_base"]
    header["format"] = 1
    digest = hashlib.sha256(associated_data({"frames": frames})).digest()
    nonce = crypto.new_nonce()
    header["manifest_nonce"] = nonce.hex()
    _, sealed = crypto.seal(crypto.subkey(key, "imnkit.video-manifest"), digest, associated_data(header), nonce)
    meta = {**bundle.meta, "aux.format": 1, "aux.video": header, "aux.frames": frames}
    dst.write_bytes(Bundle(tensors={**bundle.tensors, "aux.manifest": bytes_tensor(sealed)}, meta=meta).to_bytes())


def test_a_format_1_aux_still_opens_with_a_note_that_timing_is_not_checked(masked, tmp_path):
    masked_clip, aux = masked
    old = tmp_path / "old.aux.safetensors"
    _as_format_1(aux, old)
    late = tmp_path / "late.mkv"
    remux(masked_clip, late, lambda i, pts: pts + 40)  # every frame 40 ms later than the sound
    rec = tmp_path / "rec.mkv"
    r = invoke("extract", late, "--aux", old, "-o", rec)
    assert r.exit_code == 0, r.output
    assert "format 1" in r.output and "timestamps" in r.output
    assert times(rec) == times(late)  # the clip's times as found: what the note says
    r = invoke("extract", late, "--aux", aux, "-o", tmp_path / "rec2.mkv")  # the format-2 aux refuses it
    assert r.exit_code == 4 and AUTH_FAILED in r.output


def test_audio_drop_leaves_the_sound_out_and_copy_keeps_it(clip, tmp_path):
    assert audio_streams(clip) == 1
    mask(clip, tmp_path / "kept")
    mask(clip, tmp_path / "dropped", "--audio", "drop", "--share-copy")
    assert audio_streams(tmp_path / "kept" / "clip.masked.mkv") == 1
    for name in ("clip.masked.mkv", "clip.masked.mp4"):
        assert audio_streams(tmp_path / "dropped" / name) == 0
    dropped = tmp_path / "dropped" / "clip.masked.mkv"
    assert len(decode(dropped)) == FRAMES
    r = invoke("extract", dropped, "--aux", tmp_path / "dropped" / "clip.aux.safetensors", "-o", tmp_path / "rec.mkv")
    assert r.exit_code == 0 and audio_streams(tmp_path / "rec.mkv") == 0, r.output

    r = invoke("run", "mask", clip, "-o", tmp_path / "bad", "--allow-no-face", "--audio", "mute")
    assert r.exit_code == 2 and "--audio must be copy or drop" in r.output
    assert not (tmp_path / "bad").exists()


def test_audio_drop_is_reported(clip, tmp_path):
    r = invoke("run", "mask", clip, "-o", tmp_path / "out", "--allow-no-face", "--audio", "drop", "--json")
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["report"]["video"]["audio"] == "drop"
    assert any("sound left out" in n for n in row["notes"])
