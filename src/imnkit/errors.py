"""Errors with a one-line message, an optional hint, and the exit code the CLI returns.

Messages never contain pixel values, tensor contents or key material: only names, paths,
shapes and counts.
"""

from __future__ import annotations


class ExitCode:
    """Exit codes of the ``imnkit`` command (documented in the README)."""

    OK = 0
    FAILED = 1  # a runtime error, or some inputs of a batch failed
    USAGE = 2  # bad command line, recipe, parameter or device
    NO_FACE = 3  # a photo with no face, without --allow-no-face
    INTEGRITY = 4  # the aux does not belong to this masked image (other photo, resized, other weights)


class ImnkitError(Exception):
    """Base class: ``str(err)`` is the message; ``hint`` tells the user what to do."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(ImnkitError):
    """Bad arguments, recipe, stage name, parameter value or device."""

    exit_code = ExitCode.USAGE


class InputError(ImnkitError):
    """An input file that is missing, unreadable, not an image, truncated or too large."""


class BundleError(ImnkitError):
    """A bundle that is not safetensors, truncated, of a newer format, or lacks a key."""


class WeightsError(ImnkitError):
    """Weights that cannot be found, downloaded, verified or loaded strictly."""


class DeviceError(UsageError):
    """An unknown or unavailable device."""


class NoFaceError(ImnkitError):
    """No face was found in a photo that needs one."""

    exit_code = ExitCode.NO_FACE


class IntegrityError(ImnkitError):
    """The aux file does not match the masked image (other photo, resized, recompressed, other weights)."""

    exit_code = ExitCode.INTEGRITY


class OutputError(ImnkitError):
    """An output that exists (without --overwrite), would overwrite an input, or cannot be written."""


#: The one line every failure to take a Mask off prints (exit 4): a wrong key, passphrase, key file or
#: identity, a changed or malformed aux, changed pixels, another photo's aux (imnkit.protect.crypto).
OPEN_FAILED = "wrong key or passphrase, or the image/aux was changed"


def refuse_unless_forced(problems: list[str], force: bool) -> list[str]:
    """The one rule for ``--force``: consistency problems (an aux that looks like another image's) are
    refused with IntegrityError unless forced; forced, they become notes. Never used for authentication.

    The error is the one failure line (:data:`OPEN_FAILED`); its hint says which public fact differs
    (size, pixel digest, weights), so a user with a JPEG copy or the wrong file knows what to fix.
    """
    if problems and not force:
        raise IntegrityError(
            OPEN_FAILED,
            hint="the aux does not belong to this masked image: " + "; ".join(problems)
            + "; use the masked PNG exactly as written, with its own aux (--force tries anyway)",
        )
    return ["forced despite: " + "; ".join(problems)] if problems else []
