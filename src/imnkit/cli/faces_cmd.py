"""`imnkit faces`: list the faces of photos in faces files, masking nothing (docs/review.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import err_console, escape, handle_errors, print_json


@app.command("faces")
def faces_cmd(
    inputs: Annotated[list[str], typer.Argument(help="Photos, clips (needs imnkit\\[video]), folders (recursive) or globs.")],
    out_dir: Annotated[Optional[str], typer.Option("-o", "--out-dir", help="Write the faces files here (default: beside each photo; folders are mirrored).")] = None,
    recipe: Annotated[str, typer.Option("--recipe", help="Recipe whose align stage finds the faces (file or built-in name).")] = "mask",
    sets: Annotated[list[str], typer.Option("--set", help="Override a parameter: stage.param=value (repeatable).")] = [],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing faces files.")] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="Print one JSON line per photo: its faces file and faces.")] = False,
) -> None:
    """Find the faces without masking: write {stem}.faces.json per photo, to edit and pass to `imnkit run --faces`.

    Doubtful detections are marked "review": true; those the default leaves as they are have treatment "none".
    A clip's file lists its tracked faces: per track its frames and its box at key frames (docs/review.md).
    """
    from ..batch import mirror_out_dirs
    from ..errors import ImnkitError, UsageError
    from ..faces_file import detect_clip_faces, detect_faces, faces_document, faces_file_for, write_faces_file
    from ..imageio import check_output_path, load_image
    from ..recipe import expand_inputs, load_recipe, resolve_recipe_path
    from ..video import is_video_path

    with handle_errors():
        load_recipe(resolve_recipe_path(recipe), sets=sets)  # a bad recipe or --set fails before any photo
        files = expand_inputs(inputs)
        if not files:
            raise UsageError("no input photos")
        targets = [(f, faces_file_for(f, folder)) for f, folder in
                   mirror_out_dirs(files, inputs, Path(out_dir) if out_dir is not None else None)]
        for f, path in targets:
            check_output_path(path, overwrite=overwrite, inputs=(f,))
    failed = 0
    for f, path in targets:
        try:
            if is_video_path(f):  # tracks: the tracking pass of imnkit run, nothing masked
                doc = detect_clip_faces(f, recipe=recipe, sets=tuple(sets))
                write_faces_file(path, doc, overwrite=overwrite)
            else:
                image = load_image(f)
                doc = detect_faces(image, recipe=recipe, sets=tuple(sets))
                write_faces_file(path, faces_document(f, image, doc["faces"]), overwrite=overwrite)
        except ImnkitError as err:
            failed += 1
            err_console.print(f"[red]failed[/] {escape(str(f))}: {escape(err.message)}", soft_wrap=True)
            if json_lines:
                print_json({"path": str(f), "status": "failed", "error": err.message, "exit_code": err.exit_code})
            if len(targets) == 1:
                raise typer.Exit(err.exit_code) from None
            continue
        kind = "tracks" if "tracks" in doc else "faces"
        faces = doc[kind]
        review = sum(1 for x in faces if x["review"])
        if json_lines:
            print_json({"path": str(f), "status": "ok", "faces_file": str(path), kind: faces})
        else:
            flag = f", [yellow]{review} to review[/]" if review else ""
            what = f"{len(faces)} tracked face(s) in {doc['clip']['frames']} frames" if kind == "tracks" else f"{len(faces)} face(s)"
            err_console.print(f"[green]ok[/] {escape(str(f))} -> {escape(str(path))} ({what}{flag})")
    raise typer.Exit(1 if failed else 0)
