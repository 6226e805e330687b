"""Cryptographic primitives of the keyed methods, all from the ``cryptography`` package.

Nothing here is home-made: AES-256-GCM seals the payload and wraps keys, HKDF-SHA256 splits a
content key into independent subkeys, ChaCha20's keystream is the keyed pseudo-random stream that
orders the embedding positions, and Argon2id turns a passphrase into a key. Fresh keys, nonces and
salts come from :mod:`secrets`.

Convention:
    Every function takes and returns ``bytes``; keys are 32 bytes. Failures to authenticate raise
    :class:`AuthenticationError` with one fixed message that says nothing about which part failed
    and never includes key material.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import OPEN_FAILED, IntegrityError

KEY_BYTES = 32
NONCE_BYTES = 12  # AES-GCM's standard nonce; random per seal (2^-32 collision bound is far off)
TAG_BYTES = 16
SALT_BYTES = 16

AUTH_FAILED = OPEN_FAILED  # one line for every failure to open (imnkit.errors)


class AuthenticationError(IntegrityError):
    """A sealed payload or a wrapped key did not authenticate (exit code 4, never bypassed)."""

    def __init__(self) -> None:
        super().__init__(AUTH_FAILED, hint="use the masked image exactly as written, its own aux, and the right passphrase, key file or identity")


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return secrets.token_bytes(KEY_BYTES)


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def subkey(key: bytes, label: str) -> bytes:
    """An independent 256-bit key for one purpose (``label``), derived from ``key`` with HKDF-SHA256."""
    _check_key(key)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label.encode()).derive(key)


def seal(key: bytes, plaintext: bytes, associated_data: bytes, nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """AES-256-GCM encryption; returns ``(nonce, ciphertext_with_tag)``. A fresh nonce unless given."""
    _check_key(key)
    nonce = nonce if nonce is not None else new_nonce()
    return nonce, AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """Decrypt and authenticate; :class:`AuthenticationError` on any change or the wrong key."""
    if len(key) != KEY_BYTES or len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES:
        raise AuthenticationError()
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated_data)
    except InvalidTag:
        raise AuthenticationError() from None


def keystream(key: bytes, nbytes: int) -> bytes:
    """``nbytes`` of ChaCha20 keystream under ``key`` (a keyed pseudo-random function of the position).

    Use a :func:`subkey` for each purpose: the stream is the same for the same key.
    """
    _check_key(key)
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return encryptor.update(bytes(nbytes))


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters, stored (not secret) beside a passphrase-wrapped key."""

    salt: bytes
    # 128 MiB x 10: 0.64-0.88 s per guess on the 2-core machine at its fastest (64 MiB x 18 read
    # 0.46-0.73 s, x 12 0.37-0.70 s there; benchmarks/keyed_speed.py measures it)
    iterations: int = 10
    memory_kib: int = 131072
    lanes: int = 4

    def to_dict(self) -> dict:
        return {"name": "argon2id", "salt": self.salt.hex(), "iterations": self.iterations,
                "memory_kib": self.memory_kib, "lanes": self.lanes}

    @classmethod
    def from_dict(cls, data: dict) -> KdfParams:
        """Parameters stored in an aux or identity file; AuthenticationError for anything malformed or
        outside :func:`check_cost` (a file must not make each try cost minutes and gigabytes)."""
        if not isinstance(data, dict) or data.get("name") != "argon2id":
            raise AuthenticationError()
        values = [data.get(k) for k in ("iterations", "memory_kib", "lanes")]
        if not all(type(v) is int for v in values) or not isinstance(data.get("salt"), str):
            raise AuthenticationError()
        try:
            params = cls(salt=bytes.fromhex(data["salt"]), iterations=values[0], memory_kib=values[1], lanes=values[2])
        except ValueError:
            raise AuthenticationError() from None
        check_cost(params)
        return params

    @classmethod
    def fresh(cls) -> KdfParams:
        return cls(salt=secrets.token_bytes(SALT_BYTES))


# What a stored file may ask for: no cheaper than a floor that keeps guessing slow, and no dearer than
# a small multiple of what this version writes (128 MiB x 10 x 4 lanes): 512 MiB, 40 passes, 16 lanes.
MIN_MEMORY_KIB, MAX_MEMORY_KIB = 8192, 4 * KdfParams.memory_kib
MAX_ITERATIONS, MAX_LANES = 4 * KdfParams.iterations, 16


def check_cost(params: KdfParams) -> None:
    """AuthenticationError unless ``params`` lie within the accepted range (see the constants above)."""
    if not (MIN_MEMORY_KIB <= params.memory_kib <= MAX_MEMORY_KIB and 1 <= params.iterations <= MAX_ITERATIONS
            and 1 <= params.lanes <= MAX_LANES and params.memory_kib >= 8 * params.lanes and len(params.salt) >= 8):
        raise AuthenticationError()


def derive_key(passphrase: str, params: KdfParams) -> bytes:
    """Argon2id(passphrase) -> a 256-bit key-encryption key."""
    check_cost(params)
    kdf = Argon2id(salt=params.salt, length=KEY_BYTES, iterations=params.iterations, lanes=params.lanes,
                   memory_cost=params.memory_kib)
    return kdf.derive(passphrase.encode("utf-8"))


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"a key must be {KEY_BYTES} bytes")
