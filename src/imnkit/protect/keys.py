"""Who can take the Mask off: the content key in the aux, bare or wrapped by a passphrase or key file.

Every keyed photo gets a fresh random content key. The aux keeps it:

- bare (``wrap = "none"``, the default): the aux *is* the key;
- wrapped with a key derived from a passphrase (Argon2id, parameters and salt in the aux): the aux
  and the passphrase are both needed;
- wrapped with a key file (32 random bytes, ``imnkit keygen``): the aux and the key file are needed;
- sealed to public-key recipients (HPKE, :mod:`imnkit.protect.recipients`): the aux holds no secret
  (it may ride inside the masked PNG), and the holder of a recipient's private identity opens it.

Wrapping is AES-256-GCM (:mod:`imnkit.crypto`). A :class:`KeySource` carries what the user gave
(passphrase, key file, recipients, identities) from the command line to the stages; its ``repr``
never shows them. A source that names a way to unlock (a passphrase, key file or identity) opens
only an aux locked that way: a bare aux substituted for a locked one is refused like a wrong key.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import crypto
from ..errors import InputError, UsageError

KEY_FILE_BYTES = crypto.KEY_BYTES
_WRAP_AD = b"imnkit.key-wrap.v1:"  # binds a wrapped key to its kind of wrapping
PASSPHRASE_ENV = "IMNKIT_PASSPHRASE"
MIN_PASSPHRASE = 12  # characters: under this, the warning below
WEAK_PASSPHRASE = ("a passphrase under 12 characters is weak against guessing by anyone who has the aux "
                   "(Argon2id slows each guess, it cannot make a short passphrase strong)")


class WeakPassphraseWarning(UserWarning):
    """A passphrase that locks new auxes is short enough to guess."""


def weak_passphrase(passphrase: str | None) -> bool:
    return passphrase is not None and len(passphrase) < MIN_PASSPHRASE


class KeySource:
    """The passphrase or key file a run was given (at most one), and a way to ask for a passphrase.

    ``prompt``: called with no argument when an aux needs a passphrase that was not given (the
    CLI passes a no-echo terminal prompt when stdin is a terminal). Argon2id results are cached per
    salt, so a batch with one passphrase derives its key once.
    """

    def __init__(self, passphrase: str | None = None, key_file: bytes | None = None, prompt=None,
                 recipients: list | None = None, identities: list | None = None):
        given = [n for n, v in (("a passphrase", passphrase), ("a key file", key_file), ("recipients", recipients)) if v is not None]
        if len(given) > 1:
            raise UsageError(f"give only one of {', '.join(given)}")
        if passphrase is not None and not passphrase:
            raise UsageError("the passphrase is empty")
        if key_file is not None and len(key_file) != KEY_FILE_BYTES:
            raise UsageError(f"a key file holds exactly {KEY_FILE_BYTES} bytes")
        if recipients is not None and not recipients:
            raise UsageError("the list of recipients is empty")
        self._passphrase = passphrase
        self._key_file = key_file
        self._prompt = prompt
        self._recipients = list(recipients) if recipients is not None else None
        self._identities = list(identities or [])
        self._kdf: tuple[crypto.KdfParams, bytes] | None = None
        self.opened_by: str | None = None  # the fingerprint of the recipient whose identity opened the last aux

    def __repr__(self) -> str:  # never the secrets themselves
        return f"KeySource(wrap={self.wrap!r})"

    def __reduce__(self):  # a KeySource travels to worker processes only as what it holds
        return (KeySource, (self._passphrase, self._key_file, None, self._recipients, self._identities))

    @property
    def wrap(self) -> str:
        """How new auxes are locked: none, passphrase, key-file or recipients."""
        if self._passphrase is not None:
            return "passphrase"
        if self._recipients is not None:
            return "recipients"
        return "key-file" if self._key_file is not None else "none"

    @property
    def expects(self) -> str | None:
        """The one wrapping an aux may have to be opened with this source (None: any, asking if needed)."""
        if self._identities:
            return "recipients"
        if self._key_file is not None:
            return "key-file"
        return "passphrase" if self._passphrase is not None else None

    @property
    def recipients(self) -> list:
        return list(self._recipients or [])

    @property
    def identities(self) -> list:
        return list(self._identities)

    def passphrase(self) -> str:
        if self._passphrase is None and self._prompt is not None:
            self._passphrase = self._prompt()
        if not self._passphrase:
            raise UsageError("this aux is locked with a passphrase, and none was given",
                             hint=f"set {PASSPHRASE_ENV}, pass --passphrase-file FILE, or run on a terminal to be asked")
        return self._passphrase

    def key_file(self) -> bytes:
        if self._key_file is None:
            raise UsageError("this aux is locked with a key file, and none was given", hint="pass --key-file FILE")
        return self._key_file

    def passphrase_key(self, params: crypto.KdfParams | None = None) -> tuple[crypto.KdfParams, bytes]:
        """(KDF parameters, key-encryption key): fresh parameters once per source, or the aux's."""
        if params is None and self._kdf is not None:
            return self._kdf
        params = params or crypto.KdfParams.fresh()
        if self._kdf is not None and self._kdf[0] == params:
            return self._kdf
        self._kdf = (params, crypto.derive_key(self.passphrase(), params))
        return self._kdf


def lock_key(key: bytes, source: KeySource | None, context: bytes = b"") -> tuple[dict, dict[str, Any]]:
    """Store ``key`` as the source asks: (public description for the aux header, aux tensors).

    ``context``: what a recipient's sealed key is bound to (the photo's header digest).
    """
    source = source or KeySource()
    if source.wrap == "none":
        return {"wrap": "none"}, {"aux.key": bytes_tensor(key)}
    if source.wrap == "recipients":
        from .recipients import seal_to

        return {"wrap": "recipients", "recipients": seal_to(key, source.recipients, context)}, {}
    if source.wrap == "passphrase":
        params, kek = source.passphrase_key()
        public = {"wrap": "passphrase", "kdf": params.to_dict()}
    else:
        kek = crypto.subkey(source.key_file(), "imnkit.key-file")
        public = {"wrap": "key-file"}
    nonce, wrapped = crypto.seal(kek, key, _WRAP_AD + public["wrap"].encode())
    public["nonce"] = nonce.hex()
    return public, {"aux.key_wrapped": bytes_tensor(wrapped)}


def unlock_key(public: dict, tensors: dict[str, Any], source: KeySource | None, context: bytes = b"") -> bytes:
    """The content key from the aux; AuthenticationError for a wrong passphrase, key file or identity,
    a changed aux, or an aux not locked the way the source expects (a substituted bare aux)."""
    source = source or KeySource()
    wrap = public.get("wrap")
    if source.expects is not None and wrap != source.expects:
        raise crypto.AuthenticationError()
    if wrap == "none":
        key = tensor_bytes(tensors, "aux.key")
        if len(key) != crypto.KEY_BYTES:
            raise crypto.AuthenticationError()
        return key
    if wrap == "recipients":
        from .recipients import open_with

        if not source.identities:
            raise UsageError("this aux is sealed to recipients: give the identity that opens it",
                             hint="pass --identity FILE")
        key, source.opened_by = open_with(public.get("recipients"), source.identities, context)
        return key
    if wrap == "passphrase":
        kdf = public.get("kdf")
        _, kek = source.passphrase_key(crypto.KdfParams.from_dict(kdf if isinstance(kdf, dict) else {}))
    elif wrap == "key-file":
        kek = crypto.subkey(source.key_file(), "imnkit.key-file")
    else:
        raise crypto.AuthenticationError()
    try:
        nonce = bytes.fromhex(public["nonce"])
    except (KeyError, ValueError, TypeError):
        raise crypto.AuthenticationError() from None
    key = crypto.open_sealed(kek, nonce, tensor_bytes(tensors, "aux.key_wrapped"), _WRAP_AD + wrap.encode())
    if len(key) != crypto.KEY_BYTES:
        raise crypto.AuthenticationError()
    return key


def warn_if_weak(passphrase: str | None, stacklevel: int = 2) -> None:
    """Warn (WeakPassphraseWarning) when a passphrase that locks new auxes is short."""
    if weak_passphrase(passphrase):
        warnings.warn(WEAK_PASSPHRASE, WeakPassphraseWarning, stacklevel=stacklevel + 1)


def bytes_tensor(data: bytes) -> np.ndarray:
    """Bytes as a 1-D uint8 array, the way the aux stores key material and ciphertext."""
    return np.frombuffer(bytearray(data), dtype=np.uint8)


def tensor_bytes(tensors: dict[str, Any], name: str) -> bytes:
    """The bytes of the aux tensor (or numpy array) ``name``; AuthenticationError if it is missing or not 1-D uint8."""
    t = tensors.get(name)
    a = None if t is None else np.asarray(t)
    if a is None or a.dtype != np.uint8 or a.ndim != 1:
        raise crypto.AuthenticationError()
    return a.tobytes()


# -- files and passphrases from the command line --------------------------------------------------
def read_key_file(path: str | os.PathLike) -> bytes:
    """The 32 bytes of a key file (InputError if missing or of the wrong size)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such key file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the key file ({err.strerror or type(err).__name__})") from None
    if len(data) != KEY_FILE_BYTES:
        raise InputError(f"{path}: not an imnkit key file (it must hold exactly {KEY_FILE_BYTES} bytes)",
                         hint="make one with `imnkit keygen FILE`")
    return data


def key_file_is_private(path: str | os.PathLike) -> bool:
    """True when only the owner may read the file (mode 0600 or stricter)."""
    return not (Path(path).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def write_key_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write 32 fresh random bytes to ``path`` with mode 0600, atomically; never over a file unless asked."""
    from ..imageio import check_output_path
    from ..safefile import PRIVATE, write_file

    check_output_path(Path(path), overwrite=overwrite)
    return write_file(path, crypto.new_key(), mode=PRIVATE)


def read_text_file(path: str | os.PathLike, what: str) -> list[str]:
    """The lines of a small UTF-8 file the user named (``what``: "passphrase file", ...); InputError if unreadable."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError):
        raise InputError(f"{path}: cannot read the {what} as UTF-8 text") from None


def read_passphrase_file(path: str | os.PathLike) -> str:
    """The passphrase in a file: its first line, without the line ending."""
    lines = read_text_file(path, "passphrase file")
    if not lines or not lines[0]:
        raise InputError(f"{path}: the passphrase file is empty")
    return lines[0]
