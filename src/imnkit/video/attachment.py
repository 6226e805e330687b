"""The aux inside the masked clip: one self-contained Matroska file for recipients.

With recipients the aux holds no secret (its content key is sealed to public keys), so it can travel
in the masked clip itself, as a Matroska attachment named :data:`NAME` with the media type
:data:`MIMETYPE`. Players ignore it; ``ffprobe`` lists it as an attachment stream.

The aux seals every frame's timestamp as the written clip decodes it, and FFmpeg writes attachments
in the file's header, so the aux cannot be attached while the frames are encoded: the clip is written
first (a scratch file), its timestamps read back and sealed, and then :func:`attach` copies it packet
for packet into the output with the attachment added. Packets are copied, never decoded or
re-encoded, and the output's video timestamps are checked to be the ones sealed (OutputError if not).

What survives: the file copied as it is, or remuxed keeping every stream (``ffmpeg -map 0 -c copy``).
Re-encoding it, or a remux that maps only the audio and video streams (FFmpeg's default), drops the
attachment: the faces then come back only with a sidecar aux (``--sidecar``), and only from the
lossless clip as written (or, for ``detached``, from a re-encoded copy too).

The attachment is not authenticated by Matroska; the aux's contents are, by its own ciphers, exactly as
a sidecar aux's are.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from imnkit.errors import InputError, OutputError
from imnkit.video import require_av

NAME = "imnkit.aux.safetensors"
MIMETYPE = "application/x-imnkit-aux"


def attach(clip: Path, output: Path, aux: bytes, timestamps: list[int]) -> None:
    """Copy every stream of ``clip`` into ``output`` (Matroska), packet for packet, with ``aux`` attached.

    ``timestamps``: the video pts sealed in ``aux``; OutputError if ``output`` would show its frames
    at other times.
    """
    av = require_av()
    try:
        with av.open(str(clip)) as src, av.open(str(output), "w", format="matroska") as dst:
            streams = {s.index: _copy_stream(dst, s) for s in src.streams if s.type in ("video", "audio")}
            dst.add_attachment(NAME, MIMETYPE, aux)
            last: dict[int, object] = {}  # each stream's packet held back until the next one (see _ends)
            for packet in src.demux(*[s for s in src.streams if s.index in streams]):
                if not packet.size:  # the demuxer's end-of-stream markers: nothing to copy
                    continue
                held = last.pop(packet.stream.index, None)
                last[packet.stream.index] = packet
                if held is not None:
                    held.stream = streams[held.stream.index]
                    dst.mux(held)
            for index, packet in last.items():
                _end_at(packet, src.streams[index])
                packet.stream = streams[index]
                dst.mux(packet)
    except (av.FFmpegError, ValueError) as err:
        raise OutputError(f"{output.name}: attaching the aux failed ({type(err).__name__})") from None
    from imnkit.video.io import probe, video_timestamps

    # Never expected (packets are copied as they are), but what the aux seals must be what a reader gets.
    if video_timestamps(output)[0] != list(timestamps) or \
            replace(probe(output), path=clip) != probe(clip):  # size, rate, rotation, sound, length
        raise OutputError(f"{output.name}: the clip changed while the aux was attached; nothing was kept")


def _copy_stream(dst, stream):
    """An output stream with ``stream``'s codec parameters (the rotation included) and, for video, its
    frame rate: Matroska writes it as the track's default frame duration, which readers use as the rate."""
    copy = dst.add_stream_from_template(stream)
    if stream.type == "video" and stream.average_rate:
        copy.codec_context.framerate = stream.average_rate
    return copy


def _end_at(packet, stream) -> None:
    """Give a stream's last packet the duration the clip was written with.

    Matroska keeps the last block's exact duration only in the track's ``DURATION`` tag; the demuxer
    gives every block the track's default duration. Copied as read, the last sound packet would end
    later than it did, lengthening the file's duration (which :func:`imnkit.video.io.probe` reads to
    tell a truncated clip).
    """
    from imnkit.video.io import tag_seconds

    end = tag_seconds(stream.metadata.get("DURATION"))
    if end is None or packet.pts is None or not packet.time_base:
        return
    duration = round(end / packet.time_base) - packet.pts
    if duration >= 0:
        packet.duration = duration


def attached_aux(clip: Path) -> bytes | None:
    """The aux attached to ``clip``, or None when it carries none; InputError when it carries several."""
    av = require_av()
    try:
        with av.open(str(clip)) as container:
            found = [bytes(s.data) for s in container.streams.attachments
                     if s.metadata.get("filename") == NAME and s.metadata.get("mimetype") == MIMETYPE]
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        raise InputError(f"{clip}: not a video FFmpeg can read (corrupt, truncated or another format)") from None
    if len(found) > 1:
        raise InputError(f"{clip}: the clip carries more than one imnkit aux")
    return found[0] if found else None
