"""Public-key recipients: who may take the Mask off, without any secret on the machine that masks.

A recipient is a public key; its holder keeps the matching private *identity* (a file, mode 0600,
optionally locked by a passphrase with Argon2id). A photo's content key is sealed to every recipient
with HPKE (RFC 9180, from ``cryptography``): DHKEM(X25519) by default, or the hybrid post-quantum
ML-KEM-768 + X25519 KEM for identities made with ``--pq``; HKDF-SHA256 and AES-256-GCM in both.

Formats:
    recipient   ``imnkit1`` + base32 (lowercase, unpadded) of ``suite byte | public key | checksum``,
                the checksum being the first 4 bytes of SHA-256 over the rest (catches a mistyped copy);
                about 60 characters for X25519, 2,000 for the post-quantum suite.
    identity    a JSON file: ``{"imnkit": "identity", "version": 1, "suite", "recipient", "secret"}``
                where ``secret`` is the private key, bare (base64) or sealed under a passphrase.
    fingerprint the first 8 bytes (16 hex digits) of SHA-256 over ``suite byte | public key``: what the
                aux header, ``inspect`` and the audit log name a recipient by.

Convention:
    ``info`` binds every sealed key to the photo it belongs to (the digest of its authenticated header),
    so a sealed key moved to another aux does not open. Failures to open raise the one
    :class:`~imnkit.protect.crypto.AuthenticationError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from ..errors import InputError, UsageError
from . import crypto

PREFIX = "imnkit1"
SUITES = {1: "x25519", 2: "mlkem768-x25519"}
_SUITE_IDS = {name: number for number, name in SUITES.items()}
_X25519_BYTES, _MLKEM_PUBLIC_BYTES, _MLKEM_SEED_BYTES = 32, 1184, 64
_CHECKSUM_BYTES = 4
_INFO = b"imnkit.recipient.v1:"
_IDENTITY_AD = b"imnkit.identity.v1"


def _hpke_suite(suite: str) -> hpke.Suite:
    kem = hpke.KEM.X25519 if suite == "x25519" else hpke.KEM.MLKEM768_X25519
    return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


@dataclass(frozen=True)
class Recipient:
    """A public key to seal content keys to."""

    suite: str
    public: bytes  # X25519: 32 bytes; post-quantum: ML-KEM-768's 1,184 then X25519's 32

    def __repr__(self) -> str:
        return f"Recipient({self.suite}, {self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(bytes([_SUITE_IDS[self.suite]]) + self.public).hexdigest()[:16]

    def __str__(self) -> str:
        body = bytes([_SUITE_IDS[self.suite]]) + self.public
        body += hashlib.sha256(body).digest()[:_CHECKSUM_BYTES]
        return PREFIX + base64.b32encode(body).decode().rstrip("=").lower()

    def _key(self):
        if self.suite == "x25519":
            return x25519.X25519PublicKey.from_public_bytes(self.public)
        return hpke.MLKEM768X25519PublicKey(mlkem.MLKEM768PublicKey.from_public_bytes(self.public[:_MLKEM_PUBLIC_BYTES]),
                                            x25519.X25519PublicKey.from_public_bytes(self.public[_MLKEM_PUBLIC_BYTES:]))

    def seal(self, key: bytes, context: bytes) -> bytes:
        """HPKE-seal ``key`` to this recipient, bound to ``context`` (the photo's header digest)."""
        return _hpke_suite(self.suite).encrypt(key, self._key(), info=_INFO + context)


def parse_recipient(text: str) -> Recipient:
    """A recipient string (``imnkit1...``) -> Recipient; UsageError naming what is wrong with it."""
    text = text.strip()
    shown = text[:16] + ("..." if len(text) > 16 else "")
    if not text.startswith(PREFIX):
        raise UsageError(f"'{shown}' is not an imnkit recipient (they start with {PREFIX})",
                         hint="copy it from `imnkit keygen --identity FILE` or FILE.pub")
    body_text = text[len(PREFIX):].upper()
    try:
        body = base64.b32decode(body_text + "=" * (-len(body_text) % 8))
    except ValueError:
        raise UsageError(f"recipient '{shown}' is not valid base32 (a character was mistyped)") from None
    body, checksum = body[:-_CHECKSUM_BYTES], body[-_CHECKSUM_BYTES:]
    if len(body) < 2 or hashlib.sha256(body).digest()[:_CHECKSUM_BYTES] != checksum:
        raise UsageError(f"recipient '{shown}' fails its checksum (mistyped or cut short)")
    suite = SUITES.get(body[0])
    sizes = {"x25519": _X25519_BYTES, "mlkem768-x25519": _MLKEM_PUBLIC_BYTES + _X25519_BYTES}
    if suite is None or len(body) - 1 != sizes[suite]:
        raise UsageError(f"recipient '{shown}' has an unknown suite or length (written by a newer imnkit?)")
    recipient = Recipient(suite, body[1:])
    try:
        recipient._key()
    except ValueError:
        raise UsageError(f"recipient '{shown}' is not a valid public key") from None
    return recipient


def read_recipients_file(path: str | os.PathLike) -> list[Recipient]:
    """Recipients in a file, one per line; blank lines and ``#`` comments are skipped."""
    from .keys import read_text_file

    lines = read_text_file(path, "recipients file")
    found = [parse_recipient(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()]
    if not found:
        raise UsageError(f"{path}: the recipients file lists no recipient")
    return found


class Identity:
    """A private identity: opens content keys sealed to its recipient. ``repr`` never shows the key."""

    def __init__(self, suite: str, secret: bytes):
        if suite not in _SUITE_IDS:
            raise UsageError(f"unknown identity suite '{suite[:20]}'")
        self.suite = suite
        self._secret = secret
        self._private = self._load(suite, secret)

    @staticmethod
    def _load(suite: str, secret: bytes):
        try:
            if suite == "x25519":
                return x25519.X25519PrivateKey.from_private_bytes(secret)
            return hpke.MLKEM768X25519PrivateKey(mlkem.MLKEM768PrivateKey.from_seed_bytes(secret[:_MLKEM_SEED_BYTES]),
                                                 x25519.X25519PrivateKey.from_private_bytes(secret[_MLKEM_SEED_BYTES:]))
        except ValueError:
            raise InputError("the identity's private key is corrupt") from None

    @classmethod
    def generate(cls, pq: bool = False) -> Identity:
        """A fresh identity (``pq``: the hybrid ML-KEM-768 + X25519 suite)."""
        x = x25519.X25519PrivateKey.generate().private_bytes_raw()
        if not pq:
            return cls("x25519", x)
        return cls("mlkem768-x25519", mlkem.MLKEM768PrivateKey.generate().private_bytes_raw() + x)

    def __repr__(self) -> str:
        return f"Identity({self.suite}, {self.recipient.fingerprint})"

    def __reduce__(self):  # travels to worker processes only as what it holds
        return (Identity, (self.suite, self._secret))

    @property
    def recipient(self) -> Recipient:
        if self.suite == "x25519":
            return Recipient(self.suite, self._private.public_key().public_bytes_raw())
        x = x25519.X25519PrivateKey.from_private_bytes(self._secret[_MLKEM_SEED_BYTES:])
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(self._secret[:_MLKEM_SEED_BYTES])
        return Recipient(self.suite, m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw())

    def open(self, sealed: bytes, context: bytes) -> bytes:
        """The content key HPKE-sealed to this identity under ``context``; AuthenticationError otherwise."""
        try:
            return _hpke_suite(self.suite).decrypt(sealed, self._private, info=_INFO + context)
        except (InvalidTag, ValueError):  # another recipient's, a cut or edited sealed key: one failure
            raise crypto.AuthenticationError() from None

    # -- the identity file -------------------------------------------------------------------------
    def to_json(self, passphrase: str | None = None) -> str:
        """The identity file's text: the secret bare, or sealed under ``passphrase`` (Argon2id + AES-GCM)."""
        if passphrase is None:
            secret = {"wrap": "none", "key": base64.b64encode(self._secret).decode()}
        else:
            params = crypto.KdfParams.fresh()
            nonce, sealed = crypto.seal(crypto.derive_key(passphrase, params), self._secret, _IDENTITY_AD)
            secret = {"wrap": "passphrase", "kdf": params.to_dict(), "nonce": nonce.hex(),
                      "sealed": base64.b64encode(sealed).decode()}
        doc = {"imnkit": "identity", "version": 1, "suite": self.suite, "recipient": str(self.recipient),
               "secret": secret}
        return json.dumps(doc, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str, passphrase=None) -> Identity:
        """Read an identity file's text; ``passphrase``: a callable asked only when the file is locked."""
        try:
            doc = json.loads(text)
            suite, secret = doc["suite"], doc["secret"]
            ok = doc.get("imnkit") == "identity" and doc.get("version") == 1 and isinstance(secret, dict)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise InputError(f"{where}: not an imnkit identity file", hint="make one with `imnkit keygen --identity FILE`")
        if secret.get("wrap") == "passphrase":
            if passphrase is None:
                raise UsageError(f"{where}: the identity is locked with a passphrase, and none was given",
                                 hint="pass --passphrase-file FILE, set IMNKIT_PASSPHRASE, or run on a terminal")
            try:
                params = crypto.KdfParams.from_dict(secret["kdf"])
                nonce, sealed = bytes.fromhex(secret["nonce"]), base64.b64decode(secret["sealed"], validate=True)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise InputError(f"{where}: the identity file is corrupt") from None
            key = crypto.derive_key(passphrase(), params)
            return cls(suite, crypto.open_sealed(key, nonce, sealed, _IDENTITY_AD))
        try:
            return cls(suite, base64.b64decode(secret["key"], validate=True))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: the identity file is corrupt") from None


def read_identity(path: str | os.PathLike, passphrase=None) -> Identity:
    """The identity in ``path`` (``passphrase``: a callable, asked only when the file is locked)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such identity file") from None
    except (OSError, UnicodeDecodeError):
        raise InputError(f"{path}: cannot read the identity file") from None
    return Identity.from_json(text, str(path), passphrase)


def write_identity(path: str | os.PathLike, identity: Identity, *, passphrase: str | None = None,
                   overwrite: bool = False) -> tuple[Path, Path]:
    """Write the identity (mode 0600) and its recipient to ``path.pub``; never over files unless asked."""
    from ..safefile import PRIVATE, SHAREABLE, write_all

    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    if not overwrite:
        for p in (path, pub):
            if p.exists() or p.is_symlink():
                raise UsageError(f"{p} exists; it is not replaced (its key would be lost)", hint="choose another name")
    write_all([(path, identity.to_json(passphrase).encode(), PRIVATE),
               (pub, (str(identity.recipient) + "\n").encode(), SHAREABLE)])
    return path, pub


# -- sealing a content key to recipients ------------------------------------------------------------
def seal_to(key: bytes, recipients: list[Recipient], context: bytes) -> list[dict]:
    """The content key sealed to each recipient: ``[{suite, fingerprint, sealed (base64)}]`` for the aux."""
    if not recipients:
        raise UsageError("no recipient given")
    return [{"suite": r.suite, "fingerprint": r.fingerprint, "sealed": base64.b64encode(r.seal(key, context)).decode()}
            for r in recipients]


def open_with(entries, identities: list[Identity], context: bytes) -> tuple[bytes, str]:
    """(content key, recipient fingerprint) opened by the first identity that is a recipient.

    AuthenticationError when none is, or when the entry for it does not open.
    """
    if not isinstance(entries, list):
        raise crypto.AuthenticationError()
    for identity in identities:
        fingerprint = identity.recipient.fingerprint
        for entry in entries:
            if isinstance(entry, dict) and entry.get("fingerprint") == fingerprint and entry.get("suite") == identity.suite:
                try:
                    sealed = base64.b64decode(entry["sealed"], validate=True)
                except (KeyError, TypeError, ValueError):
                    raise crypto.AuthenticationError() from None
                key = identity.open(sealed, context)
                if len(key) != crypto.KEY_BYTES:
                    raise crypto.AuthenticationError()
                return key, fingerprint
    raise crypto.AuthenticationError()
