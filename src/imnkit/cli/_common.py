"""What every command shares: the stderr console, error reporting and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator

import typer
from rich.console import Console

from ..errors import ExitCode, ImnkitError

# Results go to stdout; messages, progress and errors to stderr.
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def debug_enabled() -> bool:
    return os.environ.get("IMNKIT_DEBUG", "") not in ("", "0")


def report_error(err: ImnkitError) -> None:
    # Escaped: a message may hold brackets (file names, 'imnkit[ray]') that rich would eat as markup.
    err_console.print(f"[bold red]error:[/] {escape(err.message)}", markup=True, soft_wrap=True)
    if err.hint:
        err_console.print(f"[dim]hint:[/] {escape(err.hint)}", markup=True, soft_wrap=True)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn an ImnkitError into a one-line message and its exit code (traceback with IMNKIT_DEBUG=1)."""
    try:
        yield
    except ImnkitError as err:
        if debug_enabled():
            raise
        report_error(err)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
    sys.stdout.flush()


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


__all__ = ["err_console", "out_console", "handle_errors", "print_json", "report_error", "ExitCode", "escape"]
