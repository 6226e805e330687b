"""The ``imnkit`` command: a thin layer over the library; one module per command group."""

from __future__ import annotations

import sys

import typer

from ._common import debug_enabled, err_console

app = typer.Typer(
    name="imnkit",
    help="Reversible face privacy: mask the faces in a photo and hide the originals inside it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # never print local variables (they can hold face pixels)
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register() -> None:
    from . import custody_cmd, keys_cmd, pipeline, tools, weights_cmd, train_cmd  # noqa: F401  (each adds its commands to `app`)
    from . import review_cmd  # noqa: F401
    from . import faces_cmd  # noqa: F401


_register()


def main() -> None:
    """Console entry point: runs the app and turns unexpected errors into one line (exit 1)."""
    from ..memory import reuse_freed_memory

    reuse_freed_memory()  # page faults were a third of extract's time (see imnkit.memory)
    try:
        app()
    except SystemExit:
        raise
    except Exception as err:  # an imnkit bug or an unexpected library error
        if debug_enabled():
            raise
        err_console.print(
            f"error: unexpected {type(err).__name__}; run again with IMNKIT_DEBUG=1 for the traceback",
            soft_wrap=True,
        )
        sys.exit(1)
