"""`imnkit keygen`, and the passphrase / key-file options that `run` and `extract` share."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import err_console, escape, handle_errors

PassphraseFlag = Annotated[bool, typer.Option("--passphrase", help="Ask for a passphrase (no echo) to lock/unlock the key in the aux.")]
PassphraseFile = Annotated[Optional[Path], typer.Option("--passphrase-file", help="Read the passphrase from the first line of FILE (or set IMNKIT_PASSPHRASE).")]
KeyFile = Annotated[Optional[Path], typer.Option("--key-file", help="Lock/unlock the key in the aux with a key file (see `imnkit keygen`).")]


def key_source(ask: bool, passphrase_file: Path | None, key_file: Path | None, *, confirm: bool):
    """The KeySource the options and IMNKIT_PASSPHRASE describe.

    ``confirm``: a new passphrase (run) is typed twice. Without any option, a passphrase is asked
    for later only if an aux needs one and stdin is a terminal (extract).
    """
    from ..errors import UsageError
    from ..protect.keys import PASSPHRASE_ENV, KeySource, key_file_is_private, read_key_file, read_passphrase_file

    given = [name for name, on in (("--passphrase", ask), ("--passphrase-file", passphrase_file), ("--key-file", key_file)) if on]
    if len(given) > 1:
        raise UsageError(f"give only one of {', '.join(given)}")
    if key_file is not None:
        if key_file.exists() and not key_file_is_private(key_file):
            err_console.print(f"[yellow]warning:[/] {escape(str(key_file))} can be read by other users (chmod 600 it)")
        return KeySource(key_file=read_key_file(key_file))
    if passphrase_file is not None:
        return KeySource(passphrase=read_passphrase_file(passphrase_file))
    if ask:
        if not sys.stdin.isatty():
            raise UsageError("--passphrase asks on a terminal, and stdin is not one",
                             hint=f"use --passphrase-file FILE or set {PASSPHRASE_ENV}")
        return KeySource(passphrase=_prompt(confirm))
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return KeySource(passphrase=env)
    return KeySource(prompt=(lambda: _prompt(False)) if sys.stdin.isatty() else None)


def _prompt(confirm: bool) -> str:
    import getpass

    from ..errors import UsageError

    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("passphrase again: ") != first:
        raise UsageError("the two passphrases differ")
    if confirm and len(first) < 12:
        err_console.print("[yellow]warning:[/] a passphrase under 12 characters is weak against guessing "
                          "by anyone who has the aux")
    return first


@app.command("keygen")
def keygen_cmd(
    file: Annotated[Path, typer.Argument(help="Where to write the key file (32 random bytes, mode 0600).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file (its key is lost).")] = False,
) -> None:
    """Write a new random key file, e.g. one organisation key: `imnkit run ... --key-file FILE`."""
    from ..protect.keys import write_key_file

    with handle_errors():
        write_key_file(file, overwrite=overwrite)
    err_console.print(f"wrote {escape(str(file))} (keep it safe: without it, auxes locked with it cannot be opened)")
