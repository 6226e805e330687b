"""The audit trail: one JSON line per unmasking or re-keying, each holding the hash of the line before.

A line: ``{"seq", "time" (UTC, ISO 8601), "command", "file", "sha256" (of the masked file's bytes),
"faces" (the indices taken off, or "all"), "recipient" (the fingerprint of the identity used, or the
way the aux was locked), "prev", "hash"}`` — never key material or pixels. ``hash`` is the SHA-256 of
the record's canonical JSON without ``hash``; ``prev`` is the previous record's ``hash`` (64 zeros for
the first). An edited line no longer matches its own hash; a removed or moved line breaks ``prev`` and
the sequence number at the line after it; :func:`verify` names the first line that is wrong.

What it does not do: whoever can write the log can also rewrite it whole with a new chain. Keep the
last line's hash somewhere else (a ticket, a second log) to make a rewrite visible.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError, OutputError

GENESIS = "0" * 64
_FIELDS = ("seq", "time", "command", "file", "sha256", "faces", "recipient", "prev", "hash")


def _canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def _own_hash(record: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _last(path: Path) -> tuple[int, str]:
    """(next sequence number, hash of the last line) of an existing log."""
    if not path.exists():
        return 0, GENESIS
    lines = path.read_bytes().splitlines()
    if not lines:
        return 0, GENESIS
    try:
        last = json.loads(lines[-1])
        seq, prev = int(last["seq"]) + 1, str(last["hash"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: the last line is not an imnkit audit record",
                         hint="`imnkit audit verify FILE` says where the log breaks") from None
    return seq, prev


def append(path: str | os.PathLike, *, command: str, file: str, sha256: str, faces, recipient: str | None) -> dict:
    """Append one record to the log at ``path`` (created 0600 if absent); returns the record."""
    path = Path(path)
    seq, prev = _last(path)
    record = {"seq": seq, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
              "file": file, "sha256": sha256, "faces": faces, "recipient": recipient, "prev": prev}
    record["hash"] = _own_hash(record)
    line = _canonical(record) + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise OutputError(f"{path}: cannot append to the audit log ({err.strerror or type(err).__name__})") from None
    return record


def verify(path: str | os.PathLike) -> tuple[int, int | None, str]:
    """(records checked, 1-based number of the first bad line or None, what is wrong there)."""
    path = Path(path)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read the audit log ({err.strerror or type(err).__name__})") from None
    prev = GENESIS
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            ok_shape = isinstance(record, dict) and set(record) == set(_FIELDS)
        except ValueError:
            ok_shape = False
        if not ok_shape or record["hash"] != _own_hash(record):
            return number - 1, number, "edited (it does not match its own hash)"
        if record["seq"] != number - 1:
            return number - 1, number, f"sequence number {record['seq']} where {number - 1} was expected (lines removed or reordered)"
        if record["prev"] != prev:
            return number - 1, number, "it does not follow the line before (a line was removed, moved, or rewritten whole)"
        prev = record["hash"]
    return len(lines), None, ""
