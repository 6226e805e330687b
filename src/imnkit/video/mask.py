"""``imnkit run`` on a clip: track the faces, mask every frame with the recipe's stages, write it losslessly.

Two passes over the clip, each decoding one frame at a time:

1. tracking (:mod:`imnkit.video.track`): the recipe's align stage on key frames, landmarks in between;
   each new person gets one Mask identity (the swap stage's own choice on the frame they appear in);
2. masking: per frame, the recipe's stages after align (swap with the track's pinned identity,
   enhance, embed with the clip's one content key and the frame's index in its authenticated header),
   then FFV1 encoding (and the optional H.264 share copy) with the input's timestamps and sound.

Outputs: ``{stem}.masked.mkv`` and ``{stem}.aux.safetensors`` (``--share-copy``: ``{stem}.masked.mp4``),
written in a private folder beside them (:mod:`imnkit.video.staging`: the aux 0600, the clips 0644) and
renamed only when all are complete. The sound is copied, or left out with ``audio = "drop"``. Once the
masked clip is written its frames' timestamps are read back and sealed into the aux with the frames.

With a faces file (the run option ``faces``: ``imnkit run --faces``, docs/review.md) exactly the tracks it
lists are masked: a tracked track it does not list is left as it is, a track added in it is fitted in
its boxes frame by frame (:func:`_listed_tracks`).

With keys sealed to recipients the aux holds no secret: it rides inside ``{stem}.masked.mkv`` as a
Matroska attachment (:mod:`imnkit.video.attachment`), and the aux file is written only with the
option ``sidecar``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imnkit.batch import output_stem
from imnkit.bundle import Bundle
from imnkit.errors import ImnkitError, NoFaceError, OutputError, UsageError
from imnkit.face.identities import assign_identities, identity_names
from imnkit.face.records import load_faces, store_faces
from imnkit.imageio import check_output_path, pixels_digest
from imnkit.recipe import INPUT_IMAGE_KEY, RunResult, Runner, StageStep
from imnkit.stage import StageContext, run_stage
from imnkit.video import io
from imnkit.video.attachment import attach
from imnkit.video.aux import AuxWriter, face_labels
from imnkit.video.staging import PRIVATE, SHAREABLE, staged
from imnkit.video.track import FaceTracker, Track, faces_at, region_tracks

_SKIPPED_STAGES = ("align", "preview")  # align: done by the tracker; preview: a photo's contact sheet
AUDIO_CHOICES = ("copy", "drop")  # the sound streams: copied as they are, or left out


def video_outputs(inp: Path, out_dir: Path | None, options: dict[str, Any]) -> list[Path]:
    """The files a run on clip ``inp`` writes: masked clip, aux, and the share copy when asked."""
    folder = out_dir if out_dir is not None else inp.parent
    stem = output_stem(inp)
    paths = [folder / f"{stem}.masked.mkv"]
    if not aux_inside(options) or options.get("sidecar"):
        paths.append(folder / f"{stem}.aux.safetensors")
    if options.get("share_copy"):
        paths.append(folder / f"{stem}.masked.mp4")
    return paths


def aux_inside(options: dict[str, Any]) -> bool:
    """Whether the aux rides inside the masked clip: only when its key is sealed to recipients (then
    it holds no secret; a bare or passphrase-locked aux never travels with the clip)."""
    keys = options.get("keys")
    return keys is not None and keys.wrap == "recipients"


def mask_video(runner: Runner, inp: Path, out_dir: Path | None = None, *, overwrite: bool = False) -> RunResult:
    """Mask every face of clip ``inp`` with ``runner``'s recipe; a RunResult like a photo's."""
    start = time.perf_counter()
    planned = video_outputs(inp, out_dir, runner.options)
    if not overwrite and all(p.exists() for p in planned):
        return RunResult(inp, "skipped", outputs=planned, message="already done (outputs exist)",
                         seconds=time.perf_counter() - start)
    try:
        for path in planned:
            check_output_path(path, overwrite=overwrite, inputs=(inp,))
        report, notes = _mask(runner, inp, planned, overwrite=overwrite)
    except ImnkitError as err:
        message = err.message + (f" ({err.hint})" if err.hint else "")
        return RunResult(inp, "failed", message=message, exit_code=err.exit_code, seconds=time.perf_counter() - start)
    return RunResult(inp, "ok", outputs=planned, seconds=time.perf_counter() - start, notes=notes,
                     report={"video": report})


def _steps(runner: Runner) -> tuple[StageStep, list[StageStep]]:
    """The recipe's align step and the steps run on every frame; UsageError for what video cannot do."""
    by_name = {s.stage.name: s for s in runner.recipe.steps}
    if "align" not in by_name or "swap" not in by_name or "embed" not in by_name:
        raise UsageError(f"recipe {runner.recipe.source}: video needs the align, swap and embed stages")
    if by_name["embed"].params["method"] == "inn":
        raise UsageError("video does not support embed.method=inn (it has no key)",
                         hint="use the default sealed method, or --set embed.method=detached")
    frame_steps = [s for s in runner.recipe.steps if s.stage.name not in _SKIPPED_STAGES]
    return by_name["align"], frame_steps


def _audio(options: dict[str, Any]) -> str:
    audio = options.get("audio") or "copy"
    if audio not in AUDIO_CHOICES:
        raise UsageError(f"--audio must be copy or drop, got '{audio}'")
    return audio


def _mask(runner: Runner, inp: Path, planned: list[Path], *, overwrite: bool) -> tuple[dict, list[str]]:
    _, frame_steps = _steps(runner)
    audio = _audio(runner.options)
    info = io.probe(inp)
    progress: Callable | None = runner.options.get("on_frames")
    options = {**runner.options, "allow_no_face": True}
    seed = runner.options.get("seed")

    t0 = time.perf_counter()
    tracks, tracker = track_clip(runner, info)
    listed = (runner.options.get("faces") or {}).get(str(inp))  # a faces file's checked tracks for this clip
    listed_notes: list[str] = []
    if listed is not None:
        tracks, listed_notes = _listed_tracks(runner, frame_steps, info, tracks, listed, options, seed)
    if not tracks and listed is None and not runner.options.get("allow_no_face"):  # as for a photo: exit 3
        raise NoFaceError(f"no face found in any of the {tracker.stats.frames} frames of {inp.name}",
                          hint="pass --allow-no-face to copy it unchanged, or lower --set align.threshold")
    t1 = time.perf_counter()

    shape = (info.height, info.width) if info.rotation % 180 == 0 else (info.width, info.height)
    method = next(s.params["method"] for s in frame_steps if s.stage.name == "embed")
    writer = AuxWriter(method, shape, info.rotation, runner.options.get("keys"), tracks=track_list(tracks))

    # Runs in worker threads. The frame's time (third argument) is sealed once the clip is written:
    # the muxer may still round and shift it.
    def process(index: int, image: np.ndarray, _when: object) -> np.ndarray:
        shape_of = image.shape[:2]
        faces, names = faces_at(tracks, index, shape_of)
        bundle = Bundle(tensors={INPUT_IMAGE_KEY: image},
                        meta={"faces.treatment": [f.treatment for f in faces], "swap.pinned": names,
                              "faces.source": [f.source for f in faces]})
        store_faces(bundle, faces)
        ctx_options = {**options, "content_key": writer.key, "aux_context": writer.context(index),
                       "aux_face_labels": lambda regions: face_labels(region_tracks(tracks, index, shape_of, regions))}
        _run(runner, frame_steps, bundle, ctx_options, seed, per_frame=True)
        masked = np.asarray(bundle.tensors["image.masked"])
        regions = bundle.meta["aux.header"]["regions"]
        writer.add(index, bundle.subset("aux."), pixels_digest(masked), region_tracks(tracks, index, shape_of, regions))
        return masked

    try:
        with staged(planned) as staging:
            masked = staging.file(planned[0], SHAREABLE)
            inside = aux_inside(runner.options)
            sidecar = next((p for p in planned if p.name.endswith(".aux.safetensors")), None)
            aux_tmp = staging.file(sidecar, PRIVATE) if sidecar else None  # holds the key (bare unless locked)
            encoded = staging.scratch(".mkv") if inside else masked  # the aux is attached in a second pass
            targets = [io.Target(encoded)]
            if planned[-1].suffix == ".mp4":
                targets.append(io.Target(staging.file(planned[-1], SHAREABLE), share=True))
            count = io.transcode(info, targets, process,
                                 (lambda n: progress("masking", n, tracker.stats.frames)) if progress else None,
                                 workers=int(runner.options.get("video_workers") or min(2, os.cpu_count() or 1)),
                                 sound=audio == "copy")
            timestamps, time_base = io.video_timestamps(encoded)  # the times a reader of the clip decodes
            aux = writer.finish(timestamps, time_base).to_bytes()
            if inside:
                attach(encoded, masked, aux, timestamps)
            if aux_tmp is not None:
                aux_tmp.write_bytes(aux)
            staging.commit()
    except OSError as err:
        raise OutputError(f"writing the outputs failed ({err.strerror or type(err).__name__}); nothing was kept") from None
    t2 = time.perf_counter()
    stats = tracker.stats.to_dict()
    report = {"frames": count, "source": info.describe(), "audio": audio, "tracking": stats, "regions": writer.regions,
              "identities": [t.identity for t in tracks], "seconds": {"tracking": round(t1 - t0, 2),
                                                                       "masking": round(t2 - t1, 2)},
              "frames_per_s": round(count / max(t2 - t0, 1e-9), 2)}
    notes = [f"{count} frames, {stats['tracks']} tracked face(s), {stats['key_frames']} key frames"]
    notes += listed_notes
    if stats["missed"]:
        notes.append(f"{stats['missed']} key frame(s) where detection missed a tracked face: masked with the "
                     "track's geometry")
    if audio == "drop" and info.audio:
        notes.append(f"sound left out (--audio drop): {len(info.audio)} stream(s)")
    for t in targets:
        notes += list(t.notes)
    return report, notes


def track_clip(runner: Runner, info: io.VideoInfo, *, name: bool = True,
               on_frame: Callable[[int, np.ndarray], None] | None = None) -> tuple[list[Track], FaceTracker]:
    """The tracking pass alone: the clip's tracks (smoothed) and the tracker (its stats, ``every``).

    ``name``: pin each new person's Mask identity (the swap stage's choice; ``imnkit faces`` lists
    tracks without). ``on_frame(index, image)`` sees every upright frame (``imnkit faces`` digests them).
    """
    align, frame_steps = _steps(runner)
    progress: Callable | None = runner.options.get("on_frames")
    options = {**runner.options, "allow_no_face": True}
    seed = runner.options.get("seed")
    namer = ((lambda img, faces: _identities(runner, frame_steps, img, faces, options, seed)) if name
             else (lambda img, faces: [None] * len(faces)))
    tracker = FaceTracker(lambda img: _detect(runner, align, img, options), namer,
                          every=int(runner.options.get("detect_every") or 8))
    for i, image in enumerate(io.frames(info)):
        tracker.feed(i, image)
        if on_frame:
            on_frame(i, image)
        if progress:
            progress("tracking", i + 1, info.estimate)
    return tracker.finish(), tracker


def _listed_tracks(runner: Runner, steps: list[StageStep], info: io.VideoInfo, tracked: list[Track],
                   listed: list[dict], options: dict, seed: int | None) -> tuple[list[Track], list[str]]:
    """The tracks to mask for a faces file's checked entries (:func:`imnkit.faces_file.load_clip_faces_file`),
    in the file's order, and notes.

    An entry whose key-frame boxes a tracked track overlaps (:func:`~imnkit.video.track.match_listed`)
    is that track, cut to the entry's frames; any frame of the entry the track lacks (and every frame
    of an entry no track matches: drawn by hand) gets landmarks fitted in the entry's interpolated box
    (:func:`imnkit.face.detect.face_in_box`: dlib's 68 points, else the fallback), in one more pass over
    the frames. Tracks not listed, and entries with treatment ``"none"``, are left as they are.
    """
    from imnkit.face.detect import TREATMENT_FALLBACK, face_in_box
    from imnkit.faces_file import record_box, track_box
    from imnkit.video.track import match_listed, restricted, smooth

    wanted = [{int(f): record_box(b) for f, b in e["boxes"].items()} for e in listed]
    matched = match_listed(tracked, wanted)
    kept: list[tuple[Track, dict, set[int]]] = []  # (track, its entry, frames to fit in the entry's boxes)
    for entry, j in zip(listed, matched):
        if entry["treatment"] == "none":
            continue
        first, last = entry["first"], entry["last"]
        t = Track(id=entry["id"], active=False) if j is None else restricted(tracked[j], first, last, entry["id"])
        kept.append((t, entry, {i for i in range(first, last + 1) if i not in t.boxes}))
    if any(need for _, _, need in kept):
        for i, image in enumerate(io.frames(info)):
            for t, entry, need in kept:
                if i not in need:
                    continue
                face = face_in_box(image, track_box(entry, i))
                t.put(i, np.asarray(face.landmarks, np.float32), face.box, face.treatment)
                if t.identity is None and entry["identity"] is None:  # its Mask: chosen where it comes in
                    t.identity = _identities(runner, steps, image, [face], options, seed)[0]
    for t, entry, need in kept:
        if need and len(need) == len(t.boxes):  # drawn by hand: smoothed as a tracked face is
            smooth(t, 1.0)
        want = entry["treatment"]
        if want is not None:  # as for a photo: "swap" only where 68 landmarks fit
            t.treatment = {i: v if want == "swap" and v == TREATMENT_FALLBACK else want for i, v in t.treatment.items()}
        if entry["identity"] is not None:
            t.identity = entry["identity"]
    notes = []
    left = sum(1 for j in range(len(tracked)) if j not in matched)
    left += sum(1 for e, j in zip(listed, matched) if e["treatment"] == "none" and j is not None)
    if left:
        notes.append(f"{left} tracked face(s) not listed in the faces file (or listed with treatment none) left as they are")
    hand = sum(1 for e, j in zip(listed, matched) if j is None and e["treatment"] != "none")
    if hand:
        notes.append(f"{hand} track(s) added in the faces file: landmarks fitted in their boxes")
    if not kept:
        notes.append("the faces file lists no face to mask: passed through unchanged")
    return [t for t, _, _ in kept], notes


def track_list(tracks: list[Track]) -> list[dict]:
    """What the aux says of each tracked person (``imnkit inspect`` lists it; ``--face N`` picks one): its
    number, Mask identity, first and last frame and frame count. No pixels, no geometry."""
    return [{"track": n, "identity": t.identity, "first": min(t.boxes), "last": max(t.boxes), "frames": len(t.boxes)}
            for n, t in enumerate(tracks)]


def _context(runner: Runner, step: StageStep, options: dict) -> StageContext:
    return StageContext(device=runner.devices[step.id], models=runner.models, options=options)


def _params(step: StageStep, seed: int | None, per_frame: bool) -> dict:
    params = dict(step.params)
    if seed is not None and "seed" in params:
        params["seed"] = seed
    if per_frame and step.stage.name == "swap":
        params["min_distance"] = 0.0  # checked once per person when the identity was chosen
    return params


def _run(runner: Runner, steps: list[StageStep], bundle: Bundle, options: dict, seed: int | None,
         per_frame: bool) -> None:
    for step in steps:  # as Runner.process: torch (and inference mode) only for stages that use it
        params, ctx = _params(step, seed, per_frame), _context(runner, step, options)
        if step.stage.uses_torch(params, options):
            import torch

            with torch.inference_mode():
                run_stage(step.stage, bundle, params, ctx)
        else:
            run_stage(step.stage, bundle, params, ctx)


def _detect(runner: Runner, align: StageStep, image: np.ndarray, options: dict):
    """The recipe's align stage on one frame: its faces."""
    bundle = Bundle(tensors={INPUT_IMAGE_KEY: image})
    _run(runner, [align], bundle, options, None, per_frame=False)
    return load_faces(bundle)


def _identities(runner: Runner, steps: list[StageStep], image: np.ndarray, faces, options: dict,
                seed: int | None) -> list[str]:
    """The Mask identity the swap stage picks for each new face on the frame it appears in."""
    swap = next(s for s in steps if s.stage.name == "swap")
    bundle = Bundle(tensors={INPUT_IMAGE_KEY: image},
                    meta={"faces.treatment": [f.treatment for f in faces]})
    store_faces(bundle, faces)
    _run(runner, [swap], bundle, options, seed, per_frame=False)
    names = list(bundle.meta.get("swap.identities") or [None] * len(faces))
    dealt = assign_identities(len(faces), seed or 0, identity_names())
    return [n or d for n, d in zip(names, dealt)]
