"""The keyed hiding methods: ``sealed`` and ``detached``.

Both compress the protected face regions (:mod:`imnkit.payload`), encrypt them with AES-256-GCM
under a fresh random content key (:mod:`imnkit.crypto`), and keep that key in the aux, bare or
wrapped (:mod:`imnkit.keys`):

- ``sealed``: the ciphertext is embedded in the Mask photo's own face regions with ternary matrix
  codes in a keyed order (:mod:`imnkit.stego`); the aux is small. The masked-vs-Mask PSNR the
  embedding may cost (``masked_psnr``) bounds how many carrier samples change, and so the size of the
  payload and the codec's quality.
- ``detached``: the ciphertext (lossless by default) is kept in the aux; the masked photo *is* the
  Mask photo, so a re-encoded (JPEG) or resized copy still gives the exact face regions back.

The regions travel as one payload image (an atlas: one codec header, one quality for all faces).
The aux header (format, method, image size, regions, codec and atlas layout, nonce, key wrapping,
embedding layout) is the cipher's associated data: any change to it, to the key material, to the ciphertext
or to the carrier pixels it was read from fails authentication. Outside the regions the recovered
photo is the masked photo, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field

from typing import Any

import numpy as np

from .. import __version__
from . import carrier, crypto, payload, stego
from ..bundle import FORMAT_VERSION as BUNDLE_FORMAT
from ..bundle import Bundle
from ..errors import BundleError, IntegrityError, UsageError, refuse_unless_forced
from ..imageio import pixels_digest
from .keys import KeySource, bytes_tensor, lock_key, tensor_bytes, unlock_key

AUX_FORMAT = 2
METHODS = ("sealed", "detached")
INN_NOTICE = "method inn has no key: anyone with imnkit can take this Mask off (the default method, sealed, is keyed)"
_PAYLOAD_KEY, _ORDER_KEY = "imnkit.payload", "imnkit.stego-order"
_AUX_META = {"aux.format", "aux.method", "aux.header", "aux.masked_sha256"}


@dataclass
class HideResult:
    masked: np.ndarray  # (H, W, 3) uint8, exactly what will be saved
    aux: Bundle
    report: dict = field(default_factory=dict)  # codec, quality, bytes, bits per region pixel (no pixels, no key)


def associated_data(header: dict) -> bytes:
    """The canonical bytes of an aux header, authenticated with the payload."""
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def hide(protected: np.ndarray, mask: np.ndarray, boxes: list[tuple[int, int, int, int]], *, method: str,
         source: KeySource | None = None, masked_psnr: float = 52.0, codec: str = "auto",
         max_quality: int = 99, key: bytes | None = None, context: dict | None = None) -> HideResult:
    """Seal the regions ``boxes`` of ``protected`` and hide them with ``method``; returns masked + aux.

    ``key``: a content key the caller keeps (a video's one key, locked once in its own aux) instead of
    a fresh one locked into this aux (the header then says ``wrap = "external"``); ``context``: extra
    JSON fields authenticated with the header (a video frame's index).

    ``masked_psnr`` (sealed): the masked-vs-Mask PSNR (dB, RGB, over the regions) the embedding may
    cost; it sets how many carrier samples change and so the codec's quality.
    ``codec``: ``auto`` (lossless when it fits, else AVIF: sealed; lossless: detached), ``lossless``
    or ``avif`` (at ``max_quality`` for detached, the best fitting quality up to it for sealed).
    """
    if method not in METHODS:
        raise UsageError(f"unknown keyed method '{method}' (known: {', '.join(METHODS)})")
    if protected.shape != mask.shape:
        raise UsageError(f"the protected and Mask images differ in size: {protected.shape[:2]} vs {mask.shape[:2]}")
    crops = [protected[y0:y1, x0:x1] for y0, x0, y1, x1 in boxes]
    maps = [carrier.carrier_map(c, mask[y0:y1, x0:x1]) for c, (y0, x0, y1, x1) in zip(crops, boxes)]
    sealed = method == "sealed" and sum(int(m.sum()) for m in maps) > 0
    if sealed:  # pixels outside the carrier maps are smoothed: extraction keeps the masked ones there
        atlas, places = payload.pack_atlas([carrier.smooth_outside(c, m) for c, m in zip(crops, maps)])
        coded = _fit_sealed(atlas, maps, masked_psnr, codec, max_quality)
    else:  # detached, or nothing the Mask changed (then only the tag, kept in the aux)
        atlas, places = payload.pack_atlas(crops)
        coded = _encode_detached(atlas, codec, max_quality)
    if key is None:
        key = crypto.new_key()
        key_public, tensors = lock_key(key, source)
    else:
        key_public, tensors = {"wrap": "external"}, {}
    nonce = crypto.new_nonce()
    h, w = protected.shape[:2]
    header = {"format": AUX_FORMAT, "method": method, "size": [h, w], "regions": [list(b) for b in boxes],
              "payload": {"codec": coded.codec, "quality": coded.quality, "bytes": len(coded.data),
                          "size": list(atlas.shape[:2]), "places": [list(p) for p in places]},
              "cipher": "aes-256-gcm", "nonce": nonce.hex(), "key": key_public, "written_by": __version__,
              "bundle_format": BUNDLE_FORMAT}
    if context is not None:
        header["context"] = context
    plaintext = coded.data
    masked = mask.copy()
    if sealed:
        packed = carrier.pack(maps)
        samples = carrier.samples(mask, boxes, maps)
        layout = stego.plan(len(samples), stego.trits_for(len(plaintext) + crypto.TAG_BYTES))
        header["stego"] = {"code": "ternary-hamming", "order": "chacha20-pixels", "layout": layout.to_list(),
                           "map_sha256": hashlib.sha256(packed).hexdigest()}
        _, ciphertext = crypto.seal(crypto.subkey(key, _PAYLOAD_KEY), plaintext, associated_data(header), nonce)
        samples, _ = stego.embed(samples, _order(key, len(samples)), ciphertext)
        carrier.put_samples(masked, boxes, maps, samples)
        tensors["aux.carrier_map"] = bytes_tensor(packed)
    else:
        _, ciphertext = crypto.seal(crypto.subkey(key, _PAYLOAD_KEY), plaintext, associated_data(header), nonce)
        tensors["aux.payload"] = bytes_tensor(ciphertext)
    aux = make_aux(masked, boxes, header, tensors)
    report = coded.describe(sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)) if boxes else {}
    return HideResult(masked=masked, aux=aux, report=report)


def make_aux(masked: np.ndarray, boxes: list, header: dict, tensors: dict[str, Any]) -> Bundle:
    h, w = masked.shape[:2]
    return Bundle(
        tensors={"aux.regions": np.array(boxes, dtype=np.int64).reshape(-1, 4),
                 "aux.size": np.array([h, w], dtype=np.int64), **tensors},
        meta={"aux.format": AUX_FORMAT, "aux.method": header["method"], "aux.header": header,
              "aux.masked_sha256": pixels_digest(masked)},
    )


def is_keyed(aux: Bundle) -> bool:
    return aux.meta.get("aux.method") in METHODS


def read_header(aux: Bundle) -> dict:
    """The aux header, checked for shape and against the aux's region and size tensors."""
    where = aux.source or "the aux"
    header = aux.meta.get("aux.header")
    if not isinstance(header, dict):
        raise BundleError(f"{where}: the aux file is incomplete or corrupt (no header)")
    if int(header.get("format", 0)) > AUX_FORMAT:
        raise BundleError(f"{where}: aux format {header.get('format')} is newer than this imnkit reads ({AUX_FORMAT})",
                          hint="upgrade imnkit")
    try:
        ok = _well_formed(header) and (
            [list(r) for r in header["regions"]] == aux.require("aux.regions").reshape(-1, 4).tolist()
            and header["size"] == aux.require("aux.size").tolist() and header["method"] == aux.meta.get("aux.method"))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        ok = False
    if not ok:  # unauthenticated so far: say no more than a failed authentication would
        raise crypto.AuthenticationError()
    return header


def consistency_problems(header: dict, aux: Bundle, masked: np.ndarray) -> list[str]:
    """What makes this image look like another than the one masked (skippable with ``force``).

    For ``detached`` a re-encoded or resized copy is expected and is not a problem.
    """
    if header["method"] == "detached":
        return []
    h, w = masked.shape[:2]
    if [h, w] != list(header["size"]):
        return [f"the image is {w}x{h} but the aux was made for {header['size'][1]}x{header['size'][0]} "
                "(resized, or another photo)"]
    if pixels_digest(masked) != aux.meta.get("aux.masked_sha256"):
        return ["the pixels differ from the masked image this aux was made for "
                "(another photo, or an edited or re-encoded copy such as a JPEG)"]
    return []


def unseal(masked: np.ndarray, aux: Bundle, source: KeySource | None = None, *,
           force: bool = False) -> tuple[np.ndarray, list[str]]:
    """``recover`` after the consistency checks (refused unless ``force``; authentication never skipped)."""
    notes = refuse_unless_forced(consistency_problems(read_header(aux), aux, masked), force)
    recovered, more = recover(masked, aux, source)
    return recovered, notes + more


def recover(masked: np.ndarray, aux: Bundle, source: KeySource | None = None,
            key: bytes | None = None) -> tuple[np.ndarray, list[str]]:
    """The protected photo from a masked one and its aux; (recovered, notes).

    ``key``: the content key of an aux written with ``hide(key=...)`` (kept by the caller).

    Raises AuthenticationError (exit 4) for a wrong key, passphrase or key file, a changed aux or
    changed carrier pixels; UsageError (exit 2) when a passphrase or key file is needed but missing.
    """
    header = read_header(aux)
    if (key is not None) != (header["key"].get("wrap") == "external"):
        raise crypto.AuthenticationError()
    key = key if key is not None else unlock_key(header["key"], aux.tensors, source)
    boxes = [tuple(int(v) for v in r) for r in header["regions"]]
    spec = header["payload"]
    h, w = (int(v) for v in header["size"])
    _check_boxes(boxes, h, w)
    shapes = [(y1 - y0, x1 - x0) for y0, x0, y1, x1 in boxes]
    notes: list[str] = []
    maps = None
    if "stego" in header:
        if masked.shape[:2] != (h, w):
            raise IntegrityError(f"cannot recover: the image is {masked.shape[1]}x{masked.shape[0]}, "
                                 f"the sealed faces were hidden in a {w}x{h} image")
        packed = tensor_bytes(aux.tensors, "aux.carrier_map")
        if hashlib.sha256(packed).hexdigest() != header["stego"]["map_sha256"]:
            raise crypto.AuthenticationError()
        maps = carrier.unpack(packed, shapes)
        samples = carrier.samples(masked, boxes, maps)
        try:
            layout = stego.Layout.from_list(header["stego"]["layout"])
            ciphertext = stego.extract(samples, _order(key, len(samples)), layout, spec["bytes"] + crypto.TAG_BYTES)
        except (KeyError, TypeError, ValueError):
            raise crypto.AuthenticationError() from None
    else:
        ciphertext = tensor_bytes(aux.tensors, "aux.payload")
    plaintext = crypto.open_sealed(crypto.subkey(key, _PAYLOAD_KEY), _nonce(header), ciphertext, associated_data(header))
    recovered = _same_size(masked, h, w, notes)
    atlas = payload.decode(plaintext, spec["codec"], tuple(spec["size"]))
    for i, ((y0, x0, y1, x1), region) in enumerate(zip(boxes, payload.unpack_atlas(atlas, spec["places"], shapes))):
        if maps is None:
            recovered[y0:y1, x0:x1] = region
        else:  # only the carrier pixels were hidden (and changed): the others are exact as they are
            recovered[y0:y1, x0:x1][maps[i]] = region[maps[i]]
    return recovered, notes


# -- helpers -------------------------------------------------------------------------------------
def _well_formed(header: dict) -> bool:
    """Every field recover() reads has the type it expects (raises on a missing one)."""
    ints = lambda values, n: isinstance(values, list) and len(values) == n and all(type(v) is int for v in values)  # noqa: E731
    spec = header["payload"]
    return (header["method"] in METHODS and ints(header["size"], 2) and isinstance(header["regions"], list)
            and all(ints(r, 4) for r in header["regions"]) and isinstance(spec["codec"], str)
            and type(spec["bytes"]) is int and spec["bytes"] >= 0 and ints(spec["size"], 2)
            and isinstance(spec["places"], list) and len(spec["places"]) == len(header["regions"])
            and all(ints(p, 2) for p in spec["places"])
            and isinstance(header["nonce"], str) and isinstance(header["key"], dict)
            and ("stego" not in header or (ints(header["stego"]["layout"], 3)
                                           and isinstance(header["stego"]["map_sha256"], str))))


def _fit_sealed(atlas: np.ndarray, maps: list[np.ndarray], masked_psnr: float, codec: str,
                max_quality: int) -> payload.Coded:
    """The best encoding of the payload image that keeps the regions' masked-vs-Mask PSNR near ``masked_psnr``.

    A +-1 change adds 1 to the squared error, so the target allows ``region samples * 255^2 / 10^(psnr/10)``
    expected changes, spread over the carrier samples as economically as the codes allow.
    """
    carrier_samples = 3 * sum(int(m.sum()) for m in maps)
    changes = 3 * sum(m.size for m in maps) * 255.0**2 / 10 ** (masked_psnr / 10)
    budget = stego.max_bytes(carrier_samples, changes) - crypto.TAG_BYTES
    if codec == "lossless":
        coded = payload.encode(atlas, "webp-lossless")
        if len(coded.data) > budget:
            raise UsageError("the face regions do not fit losslessly in the carrier",
                             hint="use codec=auto, lower embed.masked_psnr, or use embed.method=detached")
        return coded
    return payload.fit(atlas, budget, max_quality=max_quality, try_lossless=codec == "auto")


def _encode_detached(crop: np.ndarray, codec: str, quality: int) -> payload.Coded:
    if codec == "avif":
        return payload.encode(crop, "avif", quality)
    return payload.encode(crop, "webp-lossless")


def _order(key: bytes, samples: int) -> np.ndarray:
    pixels = samples // 3
    return stego.sample_order(crypto.keystream(crypto.subkey(key, _ORDER_KEY), 8 * pixels), pixels)


def _nonce(header: dict) -> bytes:
    try:
        return bytes.fromhex(header["nonce"])
    except (KeyError, TypeError, ValueError):
        raise crypto.AuthenticationError() from None


def _check_boxes(boxes, h: int, w: int) -> None:
    for y0, x0, y1, x1 in boxes:
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise crypto.AuthenticationError()


def _same_size(masked: np.ndarray, h: int, w: int, notes: list[str]) -> np.ndarray:
    """A writable copy of ``masked`` at the original size (a resized copy is scaled back, and says so)."""
    if masked.shape[:2] == (h, w):
        return masked.copy()
    from PIL import Image

    notes.append(f"the image is a resized copy ({masked.shape[1]}x{masked.shape[0]}): scaled back to {w}x{h}; "
                 "the faces are exact, the rest is the copy's")
    return np.array(Image.fromarray(masked).resize((w, h), Image.Resampling.LANCZOS))


def check_aux_bytes(raw: bytes, aux: Bundle) -> None:
    """Refuse an aux file whose bytes are not exactly what imnkit writes for its contents.

    ``raw``: the file's bytes; ``aux``: the bundle read from them. The header, key material and
    ciphertext are authenticated by the cipher; this covers the rest of the file (layout, the
    writer's version, the empty history, unknown keys): AuthenticationError on any change.
    """
    from ..bundle import META_FORMAT, META_HISTORY, META_VALUES, META_VERSION, serialize

    header = read_header(aux)
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        strings = json.loads(raw[8 : 8 + n].decode("utf-8"))["__metadata__"]
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise crypto.AuthenticationError() from None
    if not isinstance(strings, dict):
        raise crypto.AuthenticationError()
    written = (strings.get(META_VERSION), strings.get(META_FORMAT))
    if written != (header.get("written_by"), str(header.get("bundle_format"))) or \
            set(strings) != {META_FORMAT, META_VERSION, META_VALUES, META_HISTORY} or \
            set(aux.meta) != _AUX_META or aux.meta["aux.format"] != AUX_FORMAT or \
            serialize(aux.tensors, strings) != raw:
        raise crypto.AuthenticationError()
