"""`imnkit weights list|pull|verify`."""

from __future__ import annotations

from typing import Annotated

import typer

from . import app
from ._common import err_console, escape, handle_errors, out_console, print_json

weights_app = typer.Typer(help="List, download and verify model weights.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def list_cmd(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every registered model with its source, state (shipped/cached/missing) and licence."""
    from ..doctor import weights_state
    from ..weights import list_weights

    rows = [
        {"name": s.name, "source": s.source, "state": weights_state(s), "arch": s.arch,
         "repo_id": s.repo_id, "filename": s.filename, "revision": s.revision, "sha256": s.sha256,
         "license": s.license, "origin": s.origin_url, "description": s.description}
        for s in list_weights()
    ]
    if json_out:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="weights")
    for col in ("name", "source", "state", "where", "licence"):
        table.add_column(col)
    for r in rows:
        where = f"{r['repo_id']}/{r['filename']}" if r["source"] == "hub" else r["filename"]
        table.add_row(escape(r["name"]), r["source"], r["state"], escape(where), escape(r["license"]))
    out_console.print(table)


@weights_app.command("pull")
def pull_cmd(names: Annotated[list[str], typer.Argument(help="Weights names (see `imnkit weights list`).")]) -> None:
    """Download Hub weights into the Hugging Face cache and check their sha256."""
    from ..weights import get_spec, resolve_path, sha256_file

    with handle_errors():
        for name in names:
            spec = get_spec(name)
            path = resolve_path(name, download=True)
            digest = sha256_file(path)
            pin = "matches its pin" if spec.sha256 else "no pin recorded: add it to the catalog"
            err_console.print(f"{escape(name)}: {escape(str(path))} sha256 {digest} ({pin})")


@weights_app.command("verify")
def verify_cmd(
    names: Annotated[list[str], typer.Argument(help="Weights names; default: every shipped or cached one.")] = [],
) -> None:
    """Check that weights files are present and match their pinned sha256 (no download)."""
    from ..doctor import weights_state
    from ..errors import ExitCode, WeightsError
    from ..weights import list_weights, verify

    with handle_errors():
        if not names:
            names = [s.name for s in list_weights() if weights_state(s) != "missing"]
        bad = 0
        for name in names:
            try:
                r = verify(name)
            except WeightsError as err:
                bad += 1
                err_console.print(f"[red]missing[/] {escape(name)}: {escape(err.message)}")
                continue
            if r["ok"]:
                out_console.print(f"[green]ok[/] {escape(name)} sha256 {r['sha256'][:16]}…")
            else:
                bad += 1
                err_console.print(f"[red]mismatch[/] {escape(name)}: sha256 {r['sha256'][:16]}… expected {r['pinned'][:16]}…")
    if bad:
        raise typer.Exit(ExitCode.FAILED)
