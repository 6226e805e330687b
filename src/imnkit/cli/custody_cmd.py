"""`imnkit rekey` and `imnkit audit verify`: who may take the Mask off, changed and accounted for."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import err_console, escape, handle_errors, print_json
from .keys_cmd import IdentityOpt, PassphraseFile, PassphraseFlag, RecipientOpt, RecipientsFile, key_source

audit_app = typer.Typer(help="The audit log of unmaskings and re-keyings.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@app.command("rekey")
def rekey_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Masked PNGs and .mkv clips (aux inside), aux files, or folders (recursive).")],
    identity: IdentityOpt = [],
    recipient: RecipientOpt = [],
    recipients_file: RecipientsFile = None,
    audit_log: Annotated[Optional[Path], typer.Option("--audit-log", help="Append one hash-chained JSON line per file re-keyed.")] = None,
    passphrase: PassphraseFlag = False,
    passphrase_file: PassphraseFile = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON line per file.")] = False,
) -> None:
    """Seal the keys of masked files to new recipients (the old identity opens them); no pixel changes.

    Each file is rewritten atomically; afterwards an identity left out no longer opens it. A file the
    identity does not open is refused (exit 4) and left as it was.
    """
    import hashlib

    from ..errors import ExitCode, UsageError
    from ..protect.audit import append
    from ..protect.keys import KeySource
    from ..protect.rekey import rekey_file
    from ..safefile import write_file

    with handle_errors():
        if not identity:
            raise UsageError("give the --identity that opens the files now")
        new = key_source(False, None, None, confirm=False, recipients=recipient, recipients_file=recipients_file)
        if new.wrap != "recipients":
            raise UsageError("give the new --recipient(s) (or --recipients-file)")
        old = key_source(passphrase, passphrase_file, None, confirm=False, identities=identity)
        files = _files(inputs)
    failed = 0
    for path in files:
        try:
            with handle_errors():
                data, who = rekey_file(path, KeySource(identities=old.identities), new.recipients)
                mode = path.stat().st_mode & 0o777
                write_file(path, data, mode=mode)
                if audit_log is not None:
                    append(audit_log, command="rekey", file=str(path), sha256=hashlib.sha256(data).hexdigest(),
                           faces="all", recipient=who)
        except typer.Exit as ex:
            failed += 1
            code = ex.exit_code
            if json_lines:
                print_json({"path": str(path), "status": "failed", "exit_code": code})
            continue
        if json_lines:
            print_json({"path": str(path), "status": "ok", "recipients": [r.fingerprint for r in new.recipients]})
        else:
            err_console.print(f"[green]re-keyed[/] {escape(str(path))} for {len(new.recipients)} recipient(s)")
    if failed:
        raise typer.Exit(code if len(files) == 1 else ExitCode.FAILED)


def _files(inputs: list[Path]) -> list[Path]:
    from ..errors import UsageError

    out: list[Path] = []
    for item in inputs:
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.is_file() and (p.name.endswith((".masked.png", ".masked.mkv"))
                                                                          or p.name.endswith(".aux.safetensors")))
        elif item.is_file():
            out.append(item)
        else:
            raise UsageError(f"{item}: no such file or folder")
    if not out:
        raise UsageError("no masked PNG or aux file found in the inputs")
    return out


@audit_app.command("verify")
def audit_verify_cmd(
    file: Annotated[Path, typer.Argument(help="The audit log (JSON lines).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check the log's hash chain; name the first line that was edited, removed or reordered (exit 4)."""
    from ..errors import ExitCode
    from ..protect.audit import verify

    with handle_errors():
        count, bad, why = verify(file)
    if json_out:
        print_json({"file": str(file), "ok": bad is None, "records": count, "first_bad_line": bad, "problem": why or None})
    elif bad is None:
        err_console.print(f"[green]ok[/] {escape(str(file))}: {count} record(s), the chain is intact")
    else:
        err_console.print(f"[red]broken[/] {escape(str(file))}: line {bad}: {escape(why)} ({count} record(s) before it are intact)", soft_wrap=True)
    if bad is not None:
        raise typer.Exit(ExitCode.INTEGRITY)
