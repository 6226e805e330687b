"""``imnkit extract`` on a masked clip: every frame's faces back, the rest and the sound as they are.

The aux's manifest is opened first (wrong key, passphrase or key file, or a changed aux: exit 4 before
any frame is read). Each decoded frame must be exactly the masked frame of that index (sha256 in the
authenticated frame list) shown at its authenticated time; its faces are then recovered with
:func:`imnkit.protect.keyed.recover` under the clip's key. With ``detached`` (the faces are in the aux),
a re-encoded copy such as the H.264 share copy is accepted too, as a detached photo's JPEG copy is: the
faces come back exactly, the rest (pixels and timing) is the copy's. Any failure or interruption
removes the partial output: nothing is written (:mod:`imnkit.video.staging`; the recovered clip 0600).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from imnkit.protect import crypto
from imnkit.batch import output_stem
from imnkit.bundle import Bundle, read_header
from imnkit.errors import BundleError, InputError, OutputError, UsageError
from imnkit.imageio import check_output_path, pixels_digest
from imnkit.protect.keyed import open_aux, recover
from imnkit.protect.keys import KeySource
from imnkit.video import io
from imnkit.video.attachment import attached_aux
from imnkit.video.aux import OpenedAux, is_video_aux
from imnkit.video.staging import PRIVATE, staged


def default_recovered_path(masked: Path) -> Path:
    """'clip.masked.mkv' -> 'clip.recovered.mkv' beside it."""
    return masked.with_name(f"{output_stem(masked)}.recovered.mkv")


def extract_video(masked: Path, aux: Path | None, output: Path | None = None, *, keys: KeySource | None = None,
                  overwrite: bool = False, on_frame: Callable[[int, int], None] | None = None,
                  faces: list[int] | None = None) -> tuple[Path, int, list[str]]:
    """Recover clip ``masked`` with its aux file; write ``output`` atomically; (path, regions, notes).

    ``aux`` None: the aux attached to the masked clip (masked for recipients; UsageError when it has none).
    ``faces``: take off only these tracked people (numbers as ``imnkit inspect`` lists the aux's tracks);
    every other face stays masked, and so does a region where one of them overlaps someone not asked for.
    ``detached``: a re-encoded copy of the masked clip (the H.264 share copy) also gives the faces back
    exactly (they are in the aux); the rest of each frame is the copy's, and a note says so.
    """
    out = Path(output) if output else default_recovered_path(masked)
    check_output_path(out, overwrite=overwrite, inputs=(masked,) if aux is None else (masked, aux))
    bundle = load_video_aux(masked, aux)
    opened = OpenedAux(bundle, keys)  # authenticates before any frame is decoded
    wanted = _wanted(opened, faces)
    info = io.probe(masked)
    header = opened.header
    shape = (info.height, info.width) if info.rotation % 180 == 0 else (info.width, info.height)
    if list(shape) != list(header.get("size", [])) or info.rotation != header.get("rotation"):
        raise crypto.AuthenticationError()  # another clip, or a resized or turned copy

    copies: list[int] = []  # detached: frames of a re-encoded copy (the share copy), accepted as such
    taken, shared = [0], [0]  # regions taken off; regions left masked because they hold someone not asked for

    def process(index: int, image: np.ndarray, when: Fraction | None) -> np.ndarray:
        digest = pixels_digest(image)
        if header.get("method") == "detached" and not opened.matches(index, digest):
            copies.append(index)
            digest = None  # the faces are in the aux (authenticated); the rest is the copy's
        elif not opened.time_matches(index, when):
            raise crypto.AuthenticationError()  # the masked frame, shown at another time: a retimed clip
        frame_aux = opened.frame_aux(index, digest)  # checks the frame even when none of its faces comes off
        if wanted is None:
            taken[0] += len(frame_aux.meta["aux.header"]["regions"])
            return recover(image, frame_aux, key=opened.key)[0]
        chosen, left = opened.regions_of(index, wanted)
        shared[0] += left
        taken[0] += len(chosen)
        return recover(image, frame_aux, key=opened.key, faces=chosen)[0] if chosen else image

    try:
        with staged([out]) as staging:
            tmp = staging.file(out, PRIVATE)  # the faces, as the recovered photos
            count = io.transcode(info, [io.Target(tmp)], process,
                                 (lambda n: on_frame(n, len(opened.frames))) if on_frame else None)
            if count != len(opened.frames):
                raise crypto.AuthenticationError()  # frames dropped from the end
            staging.commit()
    except OSError as err:
        raise OutputError(f"{out}: the write failed ({err.strerror or type(err).__name__}); nothing was written") from None
    notes = [f"{len(copies)} frame(s) differ from the masked clip (a re-encoded copy such as the share copy): "
             "the faces are exact, the rest and its timing are the copy's"] if copies else []
    if wanted is not None:
        notes.append(f"tracked face(s) {', '.join(map(str, sorted(wanted)))} of {len(opened.tracks)} taken off "
                     f"({taken[0]} region(s)); the others stay masked")
        if shared[0]:
            notes.append(f"{shared[0]} region(s) where a face asked for overlaps one that was not stay masked "
                         "(ask for both to take them off)")
    if not opened.timed:
        notes.append("this aux (video format 1) does not authenticate the frames' timestamps: they are the clip's "
                     "as found")
    return out, taken[0], notes


def _wanted(opened: OpenedAux, faces: list[int] | None) -> set[int] | None:
    """The track numbers asked for (None: every face); UsageError for a number the clip does not have."""
    if faces is None:
        return None
    if not opened.tracked:
        raise UsageError("this clip's aux was written before tracked faces were recorded: only the whole clip "
                         "comes off", hint="drop --face")
    bad = [f for f in faces if not (type(f) is int and 0 <= f < len(opened.tracks))]
    if bad or not faces:
        have = f"it has {len(opened.tracks)} (0 to {len(opened.tracks) - 1})" if opened.tracks else "it has none"
        raise UsageError(f"no tracked face {', '.join(map(str, bad)) or '(none asked for)'} in this clip: {have}",
                         hint="`imnkit inspect` lists the clip's tracked faces")
    return set(faces)


def load_video_aux(masked: Path, aux: Path | None) -> Bundle:
    """The aux of clip ``masked``: the file ``aux``, or (None) the one attached to the clip."""
    if aux is None:
        if not Path(masked).is_file():
            raise InputError(f"{masked}: no such file")
        raw = attached_aux(Path(masked))
        if raw is None:
            raise UsageError(f"{masked} carries no aux, and none was given",
                             hint="pass --aux FILE (the aux rides inside the clip only when masked for --recipient)")
        bundle = open_aux(raw, f"{masked} (its aux)")  # no aux inside: an edited attachment, one failure (exit 4)
        if not is_video_aux(bundle):
            raise crypto.AuthenticationError()
        return bundle
    read_header(aux)  # a missing, truncated or non-bundle file fails here, with its own message
    bundle = Bundle.from_bytes(Path(aux).read_bytes(), source=str(aux), framework="numpy")
    if not is_video_aux(bundle):
        raise BundleError(f"{aux}: not the aux of a masked video", hint="use the .aux.safetensors written with the clip")
    return bundle
