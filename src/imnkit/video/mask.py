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
    align, frame_steps = _steps(runner)
    audio = _audio(runner.options)
    info = io.probe(inp)
    progress: Callable | None = runner.options.get("on_frames")
    options = {**runner.options, "allow_no_face": True}
    seed = runner.options.get("seed")

    t0 = time.perf_counter()
    tracker = FaceTracker(lambda img: _detect(runner, align, img, options),
                          lambda img, faces: _identities(runner, frame_steps, img, faces, options, seed),
                          every=int(runner.options.get("detect_every") or 8))
    for i, image in enumerate(io.frames(info)):
        tracker.feed(i, image)
        if progress:
            progress("tracking", i + 1, info.estimate)
    tracks = tracker.finish()
    if not tracks and not runner.options.get("allow_no_face"):  # as for a photo: exit 3 unless allowed
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
    if stats["missed"]:
        notes.append(f"{stats['missed']} key frame(s) where detection missed a tracked face: masked with the "
                     "track's geometry")
    if audio == "drop" and info.audio:
        notes.append(f"sound left out (--audio drop): {len(info.audio)} stream(s)")
    for t in targets:
        notes += list(t.notes)
    return report, notes


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
