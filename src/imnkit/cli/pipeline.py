"""`imnkit run` and `imnkit stage`: run a recipe over photos, or one stage on one input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import err_console, escape, handle_errors, print_json
from .keys_cmd import IdentityOpt, KeyFile, PassphraseFile, PassphraseFlag, RecipientOpt, RecipientsFile, key_source


@app.command("run")
def run_cmd(
    recipe: Annotated[str, typer.Argument(help="Recipe TOML file, or a built-in recipe name (mask, mask-hub).")],
    inputs: Annotated[list[str], typer.Argument(help="Photos, videos (needs imnkit\\[video]), bundles, folders (recursive) or globs; with --engine ray also URLs (s3://bucket/prefix, gs://..., file://...).")],
    out_dir: Annotated[Optional[str], typer.Option("-o", "--out-dir", help="Write outputs here (default: beside each input; folders are mirrored); with --engine ray also a URL.")] = None,
    sets: Annotated[list[str], typer.Option("--set", help="Override a parameter: stage.param=value (repeatable).")] = [],
    device: Annotated[Optional[str], typer.Option("--device", help="Device for every stage: auto, cpu, cuda, cuda:N.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for every stage that draws randomly.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show the plan; write nothing.")] = False,
    keep_bundles: Annotated[bool, typer.Option("--keep-bundles", help="Also write the full bundle {stem}.bundle.safetensors (the original faces: mode 0600, never share it).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (inputs are never overwritten).")] = False,
    save_mask: Annotated[bool, typer.Option("--save-mask", help="Also write {stem}.mask.png, the Mask photo before hiding.")] = False,
    preview: Annotated[bool, typer.Option("--preview", help="Also write a contact sheet {stem}.PRIVATE-preview.png per photo (the original faces: mode 0600, never share it).")] = False,
    allow_no_face: Annotated[bool, typer.Option("--allow-no-face", help="Pass photos with no face through unchanged instead of failing.")] = False,
    keep_metadata: Annotated[bool, typer.Option("--keep-metadata", help="Copy the input's EXIF into output PNGs (stripped by default).")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Process only shard i of N (i/N, 0-based), to split a folder between processes.")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="Print one JSON line per input on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the paths written.")] = False,
    share_copy: Annotated[bool, typer.Option("--share-copy", help="Videos: also write {stem}.masked.mp4 (H.264, small, for viewing; not recoverable except with embed.method=detached: docs/video.md).")] = False,
    audio: Annotated[str, typer.Option("--audio", help="Videos: copy the sound as it is (default) or drop it. The sound is neither masked nor authenticated, and a voice identifies people (docs/security.md).")] = "copy",
    engine: Annotated[str, typer.Option("--engine", help="local (this process) or ray (a local Ray, or the cluster at RAY_ADDRESS; needs imnkit\\[ray]: docs/scale-out.md).")] = "local",
    faces: Annotated[Optional[str], typer.Option("--faces", help="Mask exactly the faces listed in this faces file (one photo or clip) or in FOLDER/{stem}.faces.json (imnkit faces; docs/review.md).")] = None,
    passphrase: PassphraseFlag = False,
    passphrase_file: PassphraseFile = None,
    key_file: KeyFile = None,
    recipient: RecipientOpt = [],
    recipients_file: RecipientsFile = None,
    sidecar: Annotated[bool, typer.Option("--sidecar", help="With --recipient: also write the aux file (it rides inside the masked PNG, or a clip's masked .mkv).")] = False,
) -> None:
    """Run a recipe on photos: by default writes {stem}.masked.png and {stem}.aux.safetensors.

    With --recipient the keys are sealed to public keys and the aux rides inside {stem}.masked.png:
    one self-contained file, and no secret on the machine that masks.

    A video gives {stem}.masked.mkv (lossless, sound copied) and one {stem}.aux.safetensors (docs/video.md);
    with --recipient its aux rides inside the .mkv.

    The aux holds the key that takes the Mask off; with a passphrase or key file it is locked by it.
    """
    from ..batch import mirror_out_dirs, select_shard
    from ..engines.remote import is_url
    from ..errors import UsageError
    from ..recipe import Runner, expand_inputs, load_recipe, resolve_recipe_path, summary_exit_code
    from ..video import is_video_path

    with handle_errors():
        if engine not in ("local", "ray"):
            raise UsageError(f"--engine must be local or ray, got '{engine}'")
        if audio not in ("copy", "drop"):
            raise UsageError(f"--audio must be copy or drop, got '{audio}'")
        urls = any(is_url(i) for i in inputs) or is_url(out_dir)
        if urls and engine != "ray":
            raise UsageError("URL inputs and outputs (s3://, gs://, file:// ...) need --engine ray",
                             hint="add --engine ray (docs/scale-out.md)")
        if engine == "ray":
            from ..engines.ray_engine import require_ray

            require_ray()
        recipe_obj = load_recipe(resolve_recipe_path(recipe), sets=sets, device=device)
        roots = None
        if urls:
            files, roots, out_path = _url_inputs(inputs, out_dir)
        else:
            files, out_path = expand_inputs(inputs), (Path(out_dir) if out_dir is not None else None)
        if shard:
            files = select_shard(files, shard)
        if engine == "ray" and any(is_video_path(str(f)) for f in files):
            raise UsageError("videos run on the local engine (one clip is one job)", hint="drop --engine ray for videos")
        options = {
            "save_mask": save_mask,
            "preview": preview,
            "allow_no_face": allow_no_face,
            "keep_bundles": keep_bundles,
            "keep_metadata": keep_metadata,
            "share_copy": share_copy,
            "audio": audio,
            "seed": seed,
            "keys": key_source(passphrase, passphrase_file, key_file, confirm=True, recipients=recipient,
                               recipients_file=recipients_file),
        }
        options["aux_in_png"] = options["keys"].wrap == "recipients"
        options["sidecar"] = sidecar
        if sidecar and not options["aux_in_png"]:
            raise UsageError("--sidecar goes with --recipient (the aux file is always written otherwise)")
        if faces is not None:  # read and checked for every photo before any runs: a bad file writes nothing
            options["faces"] = _faces_files(files, faces, engine)
        # The Ray engine builds its Runners in its actors, on the devices Ray gives them.
        runner = Runner(recipe_obj, options=options) if engine == "local" or dry_run else None
        if urls:
            from ..engines.remote import mirror_target

            targets = [(f, mirror_target(f, roots, out_path)) for f in files]
        else:
            targets = mirror_out_dirs(files, inputs, out_path)
        if dry_run:
            _print_plan(recipe_obj, runner, targets)
            raise typer.Exit(0)
        if not files:
            err_console.print("nothing to do: no input photos")
            raise typer.Exit(0)

    if engine == "ray":
        from ..engines.ray_engine import result_row, run_on_ray

        def on_result(result) -> None:
            if json_lines:
                print_json(result_row(result))  # the manifest's rows
            else:
                _report(result, json_lines=False, quiet=quiet)

        with handle_errors():
            results = run_on_ray(recipe_obj, options, files, inputs, out_path, overwrite=overwrite, on_result=on_result,
                                 progress=err_console.is_terminal and not quiet and not json_lines, roots=roots,
                                 shard=shard)
    else:
        results = _run_with_progress(runner, targets, overwrite=overwrite, json_lines=json_lines, quiet=quiet)
    if len(results) > 1 and not quiet and not json_lines:
        _print_summary(results)
    raise typer.Exit(summary_exit_code(results))


def _url_inputs(inputs: list[str], out_dir: str | None):
    """Inputs and output location when URLs are involved: (files, mirror roots, output location)."""
    from ..engines.ray_engine import input_roots
    from ..engines.remote import as_place, expand_urls, is_url
    from ..errors import UsageError
    from ..imageio import IMAGE_SUFFIXES
    from ..recipe import expand_inputs

    remote = [is_url(i) for i in inputs]
    if any(remote) and not all(remote):
        raise UsageError("inputs mix URLs and local paths; run one per filesystem")
    if all(remote):
        files, roots = expand_urls(inputs, IMAGE_SUFFIXES)
    else:
        files, roots = expand_inputs(inputs), input_roots(inputs)
    return files, roots, as_place(out_dir)


def _faces_files(files: list[Path], where: str, engine: str) -> dict[str, list[dict]]:
    """--faces: each photo's checked faces-file entries, keyed as the align stage looks them up."""
    from ..errors import UsageError
    from ..faces_file import clip_facts, faces_file_for, load_clip_faces_file, load_faces_file
    from ..imageio import load_image
    from ..video import is_video_path

    if engine != "local":
        raise UsageError("--faces runs on the local engine", hint="drop --engine ray")
    src = Path(where)
    if src.is_dir():
        pairs = [(f, faces_file_for(f, src)) for f in files]
    elif src.is_file() and len(files) == 1:
        pairs = [(files[0], src)]
    elif src.is_file():
        raise UsageError("--faces FILE goes with one photo or clip", hint="for several, give the folder of their {stem}.faces.json files")
    else:
        raise UsageError(f"--faces {where}: no such file or folder")
    out = {}
    for f, path in pairs:
        if f.suffix.lower() == ".safetensors":
            raise UsageError(f"{f}: --faces takes photos and clips (faces files for bundles are not supported)")
        if not path.is_file():
            raise UsageError(f"{f}: its faces file {path} does not exist", hint="write it with imnkit faces")
        if is_video_path(f):  # a clip's file lists tracks; checked against its decoded frames
            out[str(f)] = load_clip_faces_file(path, clip_facts(f))
        else:
            out[str(f)] = load_faces_file(path, load_image(f))
    return out


def _print_plan(recipe_obj, runner, targets) -> None:
    from ..jobs import planned_outputs

    err_console.print(f"recipe [bold]{escape(recipe_obj.name)}[/] ({escape(recipe_obj.source)})")
    for step in recipe_obj.steps:
        params = ", ".join(f"{k}={v!r}" for k, v in step.params.items())
        err_console.print(f"  {escape(step.id)} on {runner.devices[step.id]}: {escape(params)}")
    for inp, folder in targets:
        outs = ", ".join(str(p) for _, p in planned_outputs(runner, inp, folder))
        err_console.print(f"  {escape(str(inp))} -> {escape(outs)}")
    err_console.print(f"dry run: {len(targets)} input(s) validated, nothing written")


def _run_with_progress(runner, targets, *, overwrite: bool, json_lines: bool, quiet: bool):
    from ..jobs import run_input
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    results = []
    show_bar = err_console.is_terminal and not quiet and len(targets) > 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=not show_bar, transient=False) as progress:
        task = progress.add_task("masking", total=len(targets))
        frames = {}

        def sub_progress(unit: str):
            def update(phase: str, done: int, total: int) -> None:
                label = f"  {phase} ({unit})"
                if label not in frames:
                    frames[label] = progress.add_task(label, total=total or None)
                progress.update(frames[label], completed=done, total=max(total, done) or None)
            return update

        runner.options["on_frames"] = sub_progress("frames")  # a video's passes
        runner.options["on_steps"] = sub_progress("steps")  # inn's refine, minutes on a CPU
        for inp, folder in targets:
            progress.update(task, description=f"{inp.name[:40]}")
            result = run_input(runner, inp, folder, overwrite=overwrite)
            for phase in list(frames):
                progress.remove_task(frames.pop(phase))
            results.append(result)
            _report(result, json_lines=json_lines, quiet=quiet)
            progress.advance(task)
    return results


def _report(result, *, json_lines: bool, quiet: bool) -> None:
    if json_lines:
        print_json(result.to_row())
        return
    if result.status == "skipped":
        if not quiet:
            err_console.print(f"[dim]skipped[/] {escape(str(result.input))}: {escape(result.message)}")
    elif result.status == "ok":
        if quiet:
            for p in result.outputs:
                print(p)
        else:
            outs = ", ".join(p.name for p in result.outputs)
            note = f" [yellow]({escape('; '.join(result.notes))})[/]" if result.notes else ""
            err_console.print(f"[green]ok[/] {escape(str(result.input))} -> {escape(outs)} ({result.seconds:.1f} s){note}")
    else:
        err_console.print(f"[red]failed[/] {escape(str(result.input))}: {escape(result.message)}", soft_wrap=True)


def _print_summary(results) -> None:
    from rich.table import Table

    table = Table(title="imnkit run", show_lines=False)
    for col in ("input", "status", "seconds", "message"):
        table.add_column(col)
    for r in results:
        table.add_row(escape(str(r.input)), r.status, f"{r.seconds:.1f}", escape(r.message or "; ".join(r.notes)))
    err_console.print(table)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    err_console.print(f"{counts['ok']} done, {counts['skipped']} skipped (already done), {counts['failed']} failed")


@app.command("stage")
def stage_cmd(
    name: Annotated[str, typer.Argument(help="Stage name (see `imnkit stages`).")],
    input: Annotated[Path, typer.Argument(help="A bundle (.safetensors) or an image file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output bundle (.safetensors).")],
    sets: Annotated[list[str], typer.Option("--set", help="Parameter: key=value (repeatable).")] = [],
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    allow_no_face: Annotated[bool, typer.Option("--allow-no-face", help="Let photos with no face pass through.")] = False,
) -> None:
    """Run one stage on a bundle or image and write the resulting bundle."""
    from ..devices import resolve_device
    from ..errors import UsageError
    from ..imageio import check_output_path
    from ..recipe import bundle_from_input
    from ..stage import StageContext, get_stage, run_stage

    with handle_errors():
        stage = get_stage(name)
        given = {}
        for item in sets:
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise UsageError(f"--set '{item}' must look like key=value")
            given[key.strip()] = value
        params = stage.resolve_params(given)
        dev = resolve_device(device)
        if output.suffix != ".safetensors":
            raise UsageError(f"{output}: the output of a stage is a bundle; name it *.safetensors")
        check_output_path(output, overwrite=overwrite, inputs=(input,))
        bundle = bundle_from_input(input)
        import torch

        with torch.inference_mode():
            run_stage(stage, bundle, params, StageContext(device=dev, options={"allow_no_face": allow_no_face}))
        bundle.save(output, overwrite=overwrite, inputs=(input,))
        err_console.print(f"wrote {escape(str(output))} ({len(bundle.tensors)} tensors)")


@app.command("extract")
def extract_cmd(
    masked: Annotated[Path, typer.Argument(help="The masked PNG (or masked .mkv clip), exactly as `imnkit run` wrote it.")],
    aux: Annotated[Optional[Path], typer.Option("--aux", help="Its aux file ({stem}.aux.safetensors); omit it when the aux rides inside the PNG or .mkv (--recipient).")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Recovered PNG (default: {stem}.recovered.png beside the input).")] = None,
    weights: Annotated[str, typer.Option("--weights", help="IMN weights (default: those named in the aux).")] = "",
    force: Annotated[bool, typer.Option("--force", help="Try even if the image does not look like the one masked; the result may be wrong (never skips authentication).")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the path written.")] = False,
    face: Annotated[list[int], typer.Option("--face", help="Take off only this face (index from `imnkit inspect`; repeatable); the others stay masked.")] = [],
    face_at: Annotated[Optional[str], typer.Option("--face-at", help="Take off only the face at pixel X,Y.")] = None,
    audit_log: Annotated[Optional[Path], typer.Option("--audit-log", help="Append one hash-chained JSON line for this unmasking to FILE (`imnkit audit verify FILE`).")] = None,
    allow_unkeyed: Annotated[bool, typer.Option("--allow-unkeyed", help="Accept an aux of the unkeyed inn method although a passphrase, key file or identity was given.")] = False,
    passphrase: PassphraseFlag = False,
    passphrase_file: PassphraseFile = None,
    key_file: KeyFile = None,
    identity: IdentityOpt = [],
) -> None:
    """Take the Mask off: recover the original faces from a masked photo and its aux.

    A wrong key, passphrase, key file or identity, a changed aux or changed masked pixels, or an aux not
    locked the way asked (a passphrase, key file or identity given): exit code 4, nothing written.
    """
    from ..api import extract_file

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..video import is_video_path

    show_bar = err_console.is_terminal and not quiet and is_video_path(masked)
    columns = (TextColumn("recovering (frames)"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with handle_errors(), Progress(*columns, console=err_console, disable=not show_bar) as progress:
        point = _point(face_at) if face_at is not None else None
        keys = key_source(passphrase, passphrase_file, key_file, confirm=False, identities=identity)
        task = progress.add_task("frames", total=None)
        result = extract_file(masked, aux, output, weights=weights, force=force, device=device, overwrite=overwrite,
                              keys=keys, on_frame=lambda done, total: progress.update(task, completed=done, total=total),
                              faces=list(face) or None, face_at=point, audit_log=audit_log, allow_unkeyed=allow_unkeyed)
    if quiet:
        print(result.output)
        return
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    err_console.print(f"wrote {escape(str(result.output))} ({result.regions} region(s) recovered)")


def _point(text: str) -> tuple[int, int]:
    from ..errors import UsageError

    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--face-at '{text}' must look like X,Y (pixels)") from None
    return x, y
