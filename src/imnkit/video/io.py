"""Probe, decode and encode clips with PyAV; the sound is copied packet for packet (never re-encoded) or left out.

Convention:
    Frames are (H, W, 3) uint8 RGB numpy arrays *upright*: a clip with rotation metadata (a phone's
    portrait video) is turned by its display rotation before the faces are looked for, and turned
    back (``np.rot90``, exact) before encoding, so the coded frames keep their orientation and the
    rotation metadata is written again.

The lossless output is FFV1 with ``pix_fmt = bgr0`` in Matroska: exact in RGB (a yuv444p or yuv420p
codec would change pixels and break the hidden payload), odd sizes included. Timestamps are copied
(variable frame rates stay as they are); Matroska keeps them at millisecond resolution, and shifts
the whole file so that no stream starts before 0, which keeps the sound in sync. The optional share
copy is H.264 yuv420p in MP4: small, for viewing, not recoverable except with the ``detached`` method.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from imnkit.errors import InputError, OutputError
from imnkit.video import require_av

# Sound codecs an MP4 share copy can carry as they are; others are left out of it (with a note).
_MP4_AUDIO = ("aac", "mp3", "ac3", "eac3", "alac", "opus")


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reads from a clip's headers (no frame decoded, except for the rotation)."""

    path: Path
    width: int
    height: int
    frames: int  # frames the header announces (0: unknown, as in Matroska)
    rate: Fraction | None  # average frame rate, when known
    time_base: Fraction
    rotation: int  # display rotation, degrees counter-clockwise, a multiple of 90
    audio: tuple[str, ...]  # codec names of the sound streams, copied as they are
    codec: str

    estimate: int = 0  # the announced count, else duration x rate (for the progress bar; 0: unknown)

    def describe(self) -> dict:
        """A JSON-able summary (no pixels)."""
        return {"width": self.width, "height": self.height, "frames": self.frames, "codec": self.codec,
                "rate": str(self.rate) if self.rate else None, "rotation": self.rotation, "audio": list(self.audio)}


def _open(path: Path):
    av = require_av()
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        raise InputError(f"{path}: not a video FFmpeg can read (corrupt, truncated or another format)") from None


def probe(path: str | Path) -> VideoInfo:
    """Read a clip's video stream parameters; InputError for a corrupt file or one with no video stream."""
    path = Path(path)
    av = require_av()
    with _open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path}: the file has no video stream")
        vs = container.streams.video[0]
        if not vs.width or not vs.height:
            raise InputError(f"{path}: the video stream has no frame size (corrupt header)")
        rotation = 0
        try:  # the display rotation travels as frame side data: read it off the first frame
            for frame in container.decode(vs):
                rotation = int(round(frame.rotation or 0)) % 360
                break
        except av.FFmpegError:
            raise InputError(f"{path}: the video is corrupt (its first frame cannot be decoded)") from None
        rate = vs.average_rate or vs.guessed_rate
        frames = int(vs.frames or 0)
        estimate = frames
        seconds = _video_seconds(vs) or (container.duration / 1e6 if container.duration else None)
        if not estimate and rate and seconds:  # container.duration: microseconds
            estimate = int(math.ceil(seconds * float(rate)))
        return VideoInfo(path=path, width=int(vs.width), height=int(vs.height), frames=frames,
                         rate=Fraction(rate) if rate else None, time_base=Fraction(vs.time_base or Fraction(1, 1000)),
                         rotation=rotation if rotation % 90 == 0 else 0,
                         audio=tuple(a.codec_context.name for a in container.streams.audio), codec=vs.codec_context.name,
                         estimate=estimate)


def _video_seconds(vs) -> float | None:
    """How long the video stream itself lasts, from Matroska's ``DURATION`` tag (written in the file's
    header, so a truncated copy keeps it) less its first timestamp; None when there is no such tag.

    Better than the file's duration, which is the longest stream's: a sound stream that ends a little
    later (or a remux that gives its last packet a default duration) would make a short clip look truncated.
    """
    end = tag_seconds(vs.metadata.get("DURATION"))
    if end is None:
        return None
    start = vs.start_time * Fraction(vs.time_base) if vs.start_time is not None and vs.time_base else 0
    return float(end - start) if end > start else None


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """The coded frame turned as a player shows it (``rotation`` degrees counter-clockwise)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def coded(image: np.ndarray, rotation: int) -> np.ndarray:
    """The inverse of :func:`upright`: back to the orientation the frames are stored in."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, -k)) if k else image


def frames(info: VideoInfo) -> Iterator[np.ndarray]:
    """Every frame of the clip, upright RGB, decoded one at a time (the sound is not read)."""
    av = require_av()
    count = 0
    with _open(info.path) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        try:
            for frame in container.decode(vs):
                count += 1
                yield upright(frame.to_ndarray(format="rgb24"), info.rotation)
        except av.FFmpegError:
            raise InputError(f"{info.path}: the video is corrupt or truncated (after {count} frame(s))") from None
    _check_count(info, count)


def _check_count(info: VideoInfo, count: int) -> None:
    if count == 0:
        raise InputError(f"{info.path}: the video has no frame")
    if info.frames and count < info.frames:
        raise InputError(f"{info.path}: the video is truncated: {count} of the {info.frames} frames its header "
                         "announces could be decoded")
    # No announced count (Matroska): the header's duration says how many to expect, give or take
    # a variable frame rate's unevenness.
    if not info.frames and info.estimate and count < 0.9 * info.estimate - 1:
        raise InputError(f"{info.path}: the video is truncated: {count} frames decoded, its header's duration "
                         f"holds about {info.estimate}")


@dataclass
class Target:
    """One output clip: where to write it (a temporary path) and how to encode its frames."""

    path: Path
    share: bool = False  # False: FFV1/bgr0 in Matroska (lossless); True: H.264/yuv420p in MP4
    notes: tuple[str, ...] = ()


def transcode(info: VideoInfo, targets: list[Target],
              process: Callable[[int, np.ndarray, Fraction | None], np.ndarray],
              on_frame: Callable[[int], None] | None = None, workers: int = 1, sound: bool = True) -> int:
    """Decode the clip, ``process(index, upright RGB, time) -> upright RGB`` each frame, encode it into
    every target with the input's timestamps, and copy the sound packets (``sound`` False: leave the
    sound out); returns the number of frames. ``time`` is the frame's presentation time in seconds as
    decoded (pts x time base, exact), None for a frame without a timestamp.

    Frames stream through a few at a time: with ``workers`` > 1, that many frames are processed at
    once in threads (the stages spend most of their time in numpy, OpenCV and codecs, which release
    the GIL) and encoded in order. Errors: InputError (corrupt or truncated input), OutputError (an
    output FFmpeg cannot write); the caller removes the targets on any error.
    """
    av = require_av()
    count = done = 0
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    pending: deque = deque()  # (future or processed frame, pts), in frame order

    def emit() -> None:
        nonlocal done
        job, pts = pending.popleft()
        out = coded(job.result() if pool else job, info.rotation)
        for w in outs:
            w.encode(out, pts)
        done += 1
        if on_frame is not None:
            on_frame(done)

    with _open(info.path) as src:
        vs = src.streams.video[0]
        vs.thread_type = "AUTO"
        sound_streams = list(src.streams.audio) if sound else []
        outs = [_Writer(av, t, info, sound_streams) for t in targets]
        try:
            last_pts = None
            for packet in src.demux(vs, *sound_streams):
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        for w in outs:
                            w.copy_sound(packet, sound_streams.index(packet.stream))
                    continue
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    raise InputError(f"{info.path}: the video is corrupt or truncated (after {count} frame(s))") from None
                for frame in decoded:
                    when = None if frame.pts is None else frame.pts * Fraction(frame.time_base or vs.time_base)
                    pts = frame.pts if frame.pts is not None else _next_pts(last_pts, info)
                    last_pts = pts
                    image = upright(frame.to_ndarray(format="rgb24"), info.rotation)
                    job = pool.submit(process, count, image, when) if pool else process(count, image, when)
                    pending.append((job, pts))
                    count += 1
                    while len(pending) > (workers if pool else 0):
                        emit()
            while pending:
                emit()
            _check_count(info, count)
            for w in outs:
                w.close()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            for w in outs:
                w.abort()
    return count


def _next_pts(last: int | None, info: VideoInfo) -> int:
    """A timestamp for a frame without one: one frame period after the last (rate, else 25 fps)."""
    if last is None:
        return 0
    period = 1 / (info.rate or Fraction(25)) / info.time_base
    return last + max(1, int(round(period)))


class _Writer:
    """One output container: a video encoder with the input's time base and the sound streams copied."""

    def __init__(self, av, target: Target, info: VideoInfo, sound: list):
        self._av = av
        self.target = target
        self._closed = False
        fmt = "mp4" if target.share else "matroska"
        try:
            self.out = av.open(str(target.path), "w", format=fmt)
            rate = info.rate or Fraction(25)
            self.video = self.out.add_stream("libx264" if target.share else "ffv1", rate=rate)
            self.width, self.height = info.width, info.height
            if target.share:  # yuv420p needs even sides: the share copy gets one replicated row/column
                self.width, self.height = info.width + info.width % 2, info.height + info.height % 2
                self.video.pix_fmt = "yuv420p"
                self.video.options = {"crf": "23", "preset": "veryfast"}
            else:
                self.video.pix_fmt = "bgr0"
            self.video.width, self.video.height = self.width, self.height
            self.video.time_base = info.time_base
            self.video.codec_context.time_base = info.time_base
            if info.rotation:
                self.video.set_display_rotation(info.rotation)
            self.sound = []
            for stream in sound:
                name = stream.codec_context.name
                if target.share and name not in _MP4_AUDIO:
                    target.notes += (f"the share copy leaves out a {name} sound stream (MP4 cannot carry it as is)",)
                    self.sound.append(None)
                else:
                    self.sound.append(self.out.add_stream_from_template(stream))
        except (av.FFmpegError, ValueError) as err:
            self.abort()
            raise OutputError(f"{target.path.name}: cannot set up the {fmt} output ({type(err).__name__})") from None

    def encode(self, image: np.ndarray, pts: int) -> None:
        if image.shape[:2] != (self.height, self.width):  # share copy of an odd-sized clip
            image = np.pad(image, ((0, self.height - image.shape[0]), (0, self.width - image.shape[1]), (0, 0)),
                           mode="edge")
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        if not self.target.share:
            frame = frame.reformat(format="bgr0")  # exact: a byte shuffle, no colour conversion
        frame.pts = pts
        frame.time_base = self.video.codec_context.time_base
        self._mux(self.video.encode(frame))

    def copy_sound(self, packet, index: int) -> None:
        stream = self.sound[index]
        if stream is None:
            return
        copy = self._av.Packet(bytes(packet))
        copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
        copy.time_base = packet.time_base
        copy.is_keyframe = packet.is_keyframe
        copy.stream = stream
        self._mux([copy])

    def _mux(self, packets) -> None:
        try:
            self.out.mux(packets)
        except self._av.FFmpegError as err:
            raise OutputError(f"{self.target.path.name}: writing failed ({type(err).__name__})") from None

    def close(self) -> None:
        self._mux(self.video.encode(None))
        self.out.close()
        self._closed = True

    def abort(self) -> None:
        if not self._closed and getattr(self, "out", None) is not None:
            try:
                self.out.close()
            except Exception:  # noqa: BLE001 - already failing; the caller removes the file
                pass
            self._closed = True


def tag_seconds(value: str | None) -> Fraction | None:
    """A Matroska ``DURATION`` tag (``HH:MM:SS.fffffffff``) in seconds, exactly; None if absent or malformed."""
    try:
        hours, minutes, seconds = (value or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + Fraction(seconds)
    except ValueError:
        return None


def frame_times(path: str | Path) -> list[float]:
    """Every video frame's presentation time in seconds (for tests and checks)."""
    with _open(Path(path)) as container:
        vs = container.streams.video[0]
        return [float(f.pts * f.time_base) for f in container.decode(vs)]


def video_timestamps(path: str | Path) -> tuple[list[int], Fraction]:
    """The video packets' presentation timestamps in file order, and the stream's time base, read without
    decoding: what an intra-only clip (FFV1, as written here) decodes to, frame by frame."""
    with _open(Path(path)) as container:
        vs = container.streams.video[0]
        return [p.pts for p in container.demux(vs) if p.size], Fraction(vs.time_base)


def sound_packets(path: str | Path) -> list[bytes]:
    """The bytes of every sound packet of the first sound stream (for tests: copied, not re-encoded)."""
    with _open(Path(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]

