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
RecipientOpt = Annotated[list[str], typer.Option("--recipient", help="Seal the keys to this public recipient (imnkit1...; repeatable): no secret needed to mask, the aux rides inside the PNG.")]
RecipientsFile = Annotated[Optional[Path], typer.Option("--recipients-file", help="Recipients, one per line (# comments).")]
IdentityOpt = Annotated[list[Path], typer.Option("--identity", help="A private identity file that may open the aux (repeatable: each is tried).")]


def key_source(ask: bool, passphrase_file: Path | None, key_file: Path | None, *, confirm: bool,
               recipients: list[str] = (), recipients_file: Path | None = None, identities: list[Path] = ()):
    """The KeySource the options and IMNKIT_PASSPHRASE describe.

    ``confirm``: a new passphrase (run) is typed twice, and a short one from any source is warned
    about. Without any option, a passphrase is asked for later only if an aux needs one and stdin is
    a terminal (extract). ``recipients`` (run) seal to public keys; ``identities`` (extract) open
    auxes sealed to them (a passphrase then unlocks a locked identity file, not the aux).
    """
    from ..errors import UsageError
    from ..protect.keys import PASSPHRASE_ENV, KeySource, key_file_is_private, read_key_file, read_passphrase_file

    sealed_to = _recipients(recipients, recipients_file)
    given = [name for name, on in (("--passphrase", ask), ("--passphrase-file", passphrase_file), ("--key-file", key_file),
                                   ("--recipient", sealed_to), ("--identity", identities)) if on]
    if len(given) > 1 and not (identities and set(given) <= {"--identity", "--passphrase", "--passphrase-file"}):
        raise UsageError(f"give only one of {', '.join(given)}")
    if sealed_to:
        return KeySource(recipients=sealed_to)
    if identities:
        return KeySource(identities=_read_identities(identities, ask, passphrase_file))
    if key_file is not None:
        if key_file.exists() and not key_file_is_private(key_file):
            err_console.print(f"[yellow]warning:[/] {escape(str(key_file))} can be read by other users (chmod 600 it)")
        return KeySource(key_file=read_key_file(key_file))
    if passphrase_file is not None:
        return _checked(KeySource(passphrase=read_passphrase_file(passphrase_file)), confirm)
    if ask:
        if not sys.stdin.isatty():
            raise UsageError("--passphrase asks on a terminal, and stdin is not one",
                             hint=f"use --passphrase-file FILE or set {PASSPHRASE_ENV}")
        return KeySource(passphrase=_prompt(confirm))
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return _checked(KeySource(passphrase=env), confirm)
    return KeySource(prompt=(lambda: _prompt(False)) if sys.stdin.isatty() else None)


def _checked(source, confirm: bool):
    """``source``, after warning about a short passphrase that will lock new auxes (``confirm``: run)."""
    from ..protect.keys import WEAK_PASSPHRASE, weak_passphrase

    if confirm and weak_passphrase(source.passphrase()):
        err_console.print(f"[yellow]warning:[/] {escape(WEAK_PASSPHRASE)}")
    return source


def _recipients(recipients: list[str], recipients_file: Path | None) -> list:
    from ..protect.recipients import parse_recipient, read_recipients_file

    found = [parse_recipient(r) for r in recipients]
    if recipients_file is not None:
        found += read_recipients_file(recipients_file)
    return found


def _read_identities(paths: list[Path], ask: bool, passphrase_file: Path | None) -> list:
    """The identity files, a locked one unlocked with the passphrase given (file, variable or prompt)."""
    from ..protect.keys import PASSPHRASE_ENV, key_file_is_private, read_passphrase_file
    from ..protect.recipients import read_identity

    def passphrase() -> str:
        if passphrase_file is not None:
            return read_passphrase_file(passphrase_file)
        if not ask and os.environ.get(PASSPHRASE_ENV):
            return os.environ[PASSPHRASE_ENV]
        if sys.stdin.isatty():
            return _prompt(False)
        from ..errors import UsageError

        raise UsageError("the identity is locked with a passphrase, and none was given",
                         hint=f"pass --passphrase-file FILE, set {PASSPHRASE_ENV}, or run on a terminal")

    out = []
    for path in paths:
        if path.exists() and not key_file_is_private(path):
            err_console.print(f"[yellow]warning:[/] {escape(str(path))} can be read by other users (chmod 600 it)")
        out.append(read_identity(path, passphrase))
    return out


def _prompt(confirm: bool) -> str:
    import getpass

    from ..errors import UsageError

    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("passphrase again: ") != first:
        raise UsageError("the two passphrases differ")
    from ..protect.keys import WEAK_PASSPHRASE, weak_passphrase

    if confirm and weak_passphrase(first):
        err_console.print(f"[yellow]warning:[/] {escape(WEAK_PASSPHRASE)}")
    return first


@app.command("keygen")
def keygen_cmd(
    file: Annotated[Optional[Path], typer.Argument(help="Where to write a key file (32 random bytes, mode 0600).")] = None,
    identity: Annotated[Optional[Path], typer.Option("--identity", help="Write a private identity here instead (mode 0600) and its public recipient to FILE.pub.")] = None,
    pq: Annotated[bool, typer.Option("--pq", help="With --identity: the hybrid post-quantum suite (ML-KEM-768 + X25519).")] = False,
    passphrase: Annotated[bool, typer.Option("--passphrase", help="With --identity: lock it with a passphrase (asked, no echo).")] = False,
    passphrase_file: PassphraseFile = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file (its key is lost).")] = False,
) -> None:
    """Write a new key file, or with --identity a private identity and its public recipient.

    `imnkit keygen team.key` then `imnkit run ... --key-file team.key`; or
    `imnkit keygen --identity me.key` then `imnkit run ... --recipient $(cat me.key.pub)` and
    `imnkit extract photo.masked.png --identity me.key`.
    """
    from ..errors import UsageError

    with handle_errors():
        if (file is None) == (identity is None):
            raise UsageError("give a key file name, or --identity FILE", hint="imnkit keygen team.key | imnkit keygen --identity me.key")
        if identity is None:
            if pq or passphrase or passphrase_file:
                raise UsageError("--pq and --passphrase go with --identity")
            from ..protect.keys import write_key_file

            write_key_file(file, overwrite=overwrite)
            err_console.print(f"wrote {escape(str(file))} (keep it safe: without it, auxes locked with it cannot be opened)")
            return
        from ..protect.keys import KeySource, read_passphrase_file
        from ..protect.recipients import Identity, write_identity

        if passphrase and not sys.stdin.isatty():
            raise UsageError("--passphrase asks on a terminal, and stdin is not one", hint="use --passphrase-file FILE")
        secret = read_passphrase_file(passphrase_file) if passphrase_file else (_prompt(True) if passphrase else None)
        if secret is not None:
            _checked(KeySource(passphrase=secret), confirm=True)
        made = Identity.generate(pq=pq)
        path, pub = write_identity(identity, made, passphrase=secret, overwrite=overwrite)
    print(str(made.recipient))
    err_console.print(f"wrote {escape(str(path))} (private, mode 0600: keep it safe) and {escape(str(pub))} "
                      f"(the recipient above, to share; fingerprint {made.recipient.fingerprint})")
