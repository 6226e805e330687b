"""`imnkit review`: check the faces of photos on a local page, then mask them (docs/review.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import err_console, escape, handle_errors
from .keys_cmd import KeyFile, PassphraseFile, PassphraseFlag, key_source


@app.command("review")
def review_cmd(
    inputs: Annotated[list[str], typer.Argument(help="Photos, folders (recursive) or globs.")],
    out_dir: Annotated[Optional[str], typer.Option("-o", "--out-dir", help="Write the faces files and outputs here (default: beside each photo; folders are mirrored).")] = None,
    recipe: Annotated[str, typer.Option("--recipe", help="Recipe TOML file, or a built-in recipe name.")] = "mask",
    sets: Annotated[list[str], typer.Option("--set", help="Override a parameter: stage.param=value (repeatable).")] = [],
    device: Annotated[Optional[str], typer.Option("--device", help="Device for every stage: auto, cpu, cuda, cuda:N.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for every stage that draws randomly.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs when a photo is approved.")] = False,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the page's URL; do not open a browser.")] = False,
    passphrase: PassphraseFlag = False,
    passphrase_file: PassphraseFile = None,
    key_file: KeyFile = None,
) -> None:
    """Review the faces on a local page (127.0.0.1, one-time token): drop false ones, draw missed ones,
    preview the Mask, approve. Approving writes {stem}.faces.json and what `imnkit run --faces` writes.

    Needs imnkit\\[review]. A {stem}.faces.json already in the output folder is the starting point.
    """
    from ..batch import mirror_out_dirs
    from ..errors import UsageError
    from ..recipe import Runner, expand_inputs, load_recipe, resolve_recipe_path
    from ..review.server import loopback_socket, page_url, require_review_extra, serve
    from ..video import is_video_path

    with handle_errors():
        require_review_extra()
        from ..review.app import build_app, new_token
        from ..review.session import ReviewSession, open_photos

        recipe_obj = load_recipe(resolve_recipe_path(recipe), sets=sets, device=device)
        files = expand_inputs(inputs)
        if any(is_video_path(f) for f in files):
            raise UsageError("the review page takes photos; clips are reviewed with `imnkit faces`",
                             hint="leave the videos out of the inputs")
        if not files:
            raise UsageError("no input photos")
        keys = key_source(passphrase, passphrase_file, key_file, confirm=True)
        runner = Runner(recipe_obj, options={"seed": seed, "keys": keys})
        targets = mirror_out_dirs(files, inputs, Path(out_dir) if out_dir is not None else None)
        photos = open_photos(targets, recipe=recipe, sets=sets, device=device,
                             on_photo=lambda p: err_console.print(f"finding faces: {escape(str(p))}"))
        session = ReviewSession(photos, runner, recipe=recipe_obj.name, overwrite=overwrite)

    sock = loopback_socket()
    port = sock.getsockname()[1]
    token = new_token()
    url = page_url(port, token)
    print(url, flush=True)  # stdout: the one thing a script needs
    err_console.print(f"review {len(photos)} photo(s) at the URL above (this machine only); Ctrl+C to stop")
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        serve(build_app(session, token=token, port=port), sock)
    finally:
        session.close()
        sock.close()
