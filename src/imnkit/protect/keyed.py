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
import math
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

AUX_FORMAT = 3  # 3: each region under its own face key, key wrapping outside the sealed header (2: one key, one atlas)
READ_FORMATS = (2, 3)
FACE_FLOOR_DB = 46.0  # Y: a sealed face that would come back worse travels (lossless, encrypted) in the aux
_CHECKED_PIXELS = 200 * 200  # carrier pixels: larger faces come back at 47-58 dB (benchmarks/roundtrip.py)
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
         max_quality: int = 99, key: bytes | None = None, context: dict | None = None,
         treatments: list[str] | None = None, face_labels: list[str] | None = None) -> HideResult:
    """Seal each region of ``boxes`` of ``protected`` under its own face key and hide it with ``method``.

    ``key``: a content key the caller keeps (a video's one key, locked once in its own aux) instead of
    a fresh one locked into this aux (the header then says ``wrap = "external"``); ``context``: extra
    JSON fields authenticated with the header (a video frame's index); ``treatments``: what the swap
    did in each region (listed by ``imnkit inspect``; no pixels).

    Each region ``i`` is sealed under the face key ``HKDF(content key, "imnkit.face/i")``, so one face
    can be taken off alone. ``face_labels``: a label per region to use instead of ``i`` (authenticated in
    the header), so that one person keeps one face key across the frames of a clip (``t3``: track 3).
    ``masked_psnr`` (sealed): the masked-vs-Mask PSNR (dB, RGB, over each region) the embedding may
    cost. A region whose payload does not fit its carrier, or would come back under
    :data:`FACE_FLOOR_DB` (small faces), travels encrypted and lossless in the aux. ``codec``: ``auto``
    (lossless when it fits, else AVIF: sealed; lossless: detached), ``lossless`` or ``avif``.
    """
    if method not in METHODS:
        raise UsageError(f"unknown keyed method '{method}' (known: {', '.join(METHODS)})")
    if protected.shape != mask.shape:
        raise UsageError(f"the protected and Mask images differ in size: {protected.shape[:2]} vs {mask.shape[:2]}")
    crops = [protected[y0:y1, x0:x1] for y0, x0, y1, x1 in boxes]
    maps = [carrier.carrier_map(c, mask[y0:y1, x0:x1]) for c, (y0, x0, y1, x1) in zip(crops, boxes)]
    h, w = protected.shape[:2]
    header: dict[str, Any] = {"format": AUX_FORMAT, "method": method, "size": [h, w], "regions": [list(b) for b in boxes],
                              "cipher": "aes-256-gcm", "written_by": __version__, "bundle_format": BUNDLE_FORMAT}
    if context is not None:
        header["context"] = context
    if treatments is not None and len(treatments) == len(boxes):
        header["treatments"] = [str(t) for t in treatments]
    if face_labels is not None:
        header["face_labels"] = [str(label) for label in face_labels]
        if len(header["face_labels"]) != len(boxes) or len(set(header["face_labels"])) != len(boxes):
            raise UsageError("face_labels must give each region its own label")
    labels = header.get("face_labels") or list(range(len(boxes)))
    planned = [_plan_region(method, box, crop, mask, keep, masked_psnr, codec, max_quality)
               for box, crop, keep in zip(boxes, crops, maps)]
    entries, plaintexts, samples = (list(column) for column in zip(*planned)) if planned else ([], [], [])
    header["payloads"] = entries
    tensors: dict[str, Any] = {}
    if any(s is not None for s in samples):
        packed = carrier.pack(maps)
        header["map_sha256"] = hashlib.sha256(packed).hexdigest()
        tensors["aux.carrier_map"] = bytes_tensor(packed)
    if key is None:
        key = crypto.new_key()
        header["key"], key_tensors = lock_key(key, source, context=header_digest(header))
        tensors.update(key_tensors)
    else:
        header["key"] = {"wrap": "external"}
    masked, in_aux = mask.copy(), []
    ad = associated_data(_authenticated(header))
    for i, (box, keep, entry, plaintext, carried) in enumerate(zip(boxes, maps, entries, plaintexts, samples)):
        fkey = face_key(key, labels[i])
        _, ciphertext = crypto.seal(crypto.subkey(fkey, _PAYLOAD_KEY), plaintext, ad, bytes.fromhex(entry["nonce"]))
        if carried is None:
            in_aux.append(ciphertext)
            continue
        changed, _ = stego.embed(carried, _order(fkey, len(carried)), ciphertext)
        carrier.put_samples(masked, [box], [keep], changed)
    if in_aux:
        tensors["aux.payload"] = bytes_tensor(b"".join(in_aux))
    aux = make_aux(masked, boxes, header, tensors)
    report = _report(entries, boxes)
    return HideResult(masked=masked, aux=aux, report=report)


def _plan_region(method, box, crop, mask, keep, masked_psnr, codec, max_quality) -> tuple[dict, bytes, Any]:
    """One region's header entry (how it is carried, codec, nonce, layout), payload and carrier samples."""
    coded, carried = _encode_region(method, box, crop, mask, keep, masked_psnr, codec, max_quality)
    entry = {"carry": "stego" if carried is not None else "aux", "codec": coded.codec, "quality": coded.quality,
             "bytes": len(coded.data), "nonce": crypto.new_nonce().hex()}
    if carried is not None:
        entry["layout"] = stego.plan(len(carried), stego.trits_for(len(coded.data) + crypto.TAG_BYTES)).to_list()
    elif method == "sealed":  # binds the face to this photo as its embedding would: the masked pixels there
        y0, x0, y1, x1 = box
        entry["masked_sha256"] = hashlib.sha256(np.ascontiguousarray(mask[y0:y1, x0:x1]).tobytes()).hexdigest()
    return entry, coded.data, carried


def face_key(key: bytes, index: int | str) -> bytes:
    """The key that seals region ``index`` alone: HKDF of the content key with the region's label (its
    index, or the ``face_labels`` entry it was hidden with)."""
    return crypto.subkey(key, f"imnkit.face/{index}")


def header_digest(header: dict) -> bytes:
    """SHA-256 of the authenticated header (everything but the key wrapping): what sealed keys are bound to."""
    return hashlib.sha256(associated_data(_authenticated(header))).digest()


def _encode_region(method, box, crop, mask, keep, masked_psnr, codec, max_quality):
    """(coded payload, carrier samples or None when it travels in the aux) for one region.

    A sealed region whose embedded payload would bring its face back under :data:`FACE_FLOOR_DB`
    (Y, over the region) goes, encrypted and lossless, in the aux instead: a small face has too
    few carrier pixels for a good encoding (36-px faces of a group came back at 32-42 dB), and its
    lossless payload is a few kB. The aux of a photo masked for recipients rides inside the PNG anyway.
    """
    if method == "sealed" and keep.any():
        carried = carrier.samples(mask, [box], [keep])
        try:
            coded = _fit_sealed(carrier.smooth_outside(crop, keep), [keep], masked_psnr, codec, max_quality)
        except UsageError:  # too small a carrier even at the lowest quality
            if codec == "lossless":
                raise
        else:
            if codec != "auto" or keep.sum() > _CHECKED_PIXELS or _recovered_y(coded, crop, keep) >= FACE_FLOOR_DB:
                return coded, carried
        return payload.encode(crop, "webp-lossless"), None
    return _encode_detached(crop, codec, max_quality), None


def _recovered_y(coded: payload.Coded, crop: np.ndarray, keep: np.ndarray) -> float:
    """PSNR (dB, BT.601 Y) of the region as it will be recovered: the decoded payload on the ``keep``
    pixels, the others exact (the measure benchmarks/roundtrip.py reports per face)."""
    if coded.codec != "avif":
        return float("inf")
    decoded = payload.decode(coded.data, coded.codec, crop.shape[:2]).astype(np.float64)
    diff = (decoded[keep] - crop[keep].astype(np.float64)) @ np.array([0.299, 0.587, 0.114])
    mse = float(np.sum(diff**2)) / keep.size
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _report(entries: list[dict], boxes) -> dict:
    if not entries:
        return {}
    pixels = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    total = sum(e["bytes"] for e in entries)
    codecs = sorted({e["codec"] for e in entries})
    return {"codec": codecs[0] if len(codecs) == 1 else "+".join(codecs),
            "quality": min(e["quality"] for e in entries), "bytes": total, "bpp": round(8 * total / max(pixels, 1), 3),
            "in_aux": sum(e["carry"] == "aux" for e in entries)}


def _authenticated(header: dict) -> dict:
    """The header fields sealed with the payloads: all but ``key``, so keys can be re-wrapped (rekey)."""
    return {k: v for k, v in header.items() if k != "key"}


def make_aux(masked: np.ndarray, boxes: list, header: dict, tensors: dict[str, Any]) -> Bundle:
    h, w = masked.shape[:2]
    return Bundle(
        tensors={"aux.regions": np.array(boxes, dtype=np.int64).reshape(-1, 4),
                 "aux.size": np.array([h, w], dtype=np.int64), **tensors},
        meta={"aux.format": AUX_FORMAT, "aux.method": header["method"], "aux.header": header,
              "aux.masked_sha256": pixels_digest(masked)},
    )


def open_aux(raw: bytes, where: str) -> Bundle:
    """The aux bundle in ``raw`` (numpy tensors); bytes that are no bundle fail as AuthenticationError
    (an edited aux says no more than a wrong key)."""
    try:
        return Bundle.from_bytes(raw, source=where, framework="numpy")
    except BundleError:
        raise crypto.AuthenticationError() from None


def is_keyed(aux: Bundle) -> bool:
    return aux.meta.get("aux.method") in METHODS


def read_header(aux: Bundle) -> dict:
    """The aux header, checked for shape and against the aux's region and size tensors.

    Anything malformed raises the one AuthenticationError (nothing is authenticated yet, so nothing
    more is said); a format newer than this version reads is an IntegrityError that says so.
    """
    where = aux.source or "the aux"
    header = aux.meta.get("aux.header")
    if not isinstance(header, dict) or type(header.get("format")) is not int:
        raise crypto.AuthenticationError()
    if header["format"] > AUX_FORMAT:
        raise IntegrityError(f"{where}: aux format {header['format']} is newer than this imnkit reads ({AUX_FORMAT})",
                             hint="upgrade imnkit")
    try:
        ok = header["format"] in READ_FORMATS and _well_formed(header) and (
            [list(r) for r in header["regions"]] == aux.require("aux.regions").reshape(-1, 4).tolist()
            and header["size"] == aux.require("aux.size").tolist() and header["method"] == aux.meta.get("aux.method"))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, BundleError):
        ok = False
    if not ok:  # unauthenticated so far: say no more than a failed authentication would
        raise crypto.AuthenticationError()
    return header


def faces_of(header: dict) -> list[dict]:
    """The regions an aux hides, as ``inspect`` lists them: index, box, treatment (never pixels)."""
    treatments = header.get("treatments") or []
    return [{"face": i, "box": list(box), "treatment": treatments[i] if i < len(treatments) else None}
            for i, box in enumerate(header.get("regions", []))]


def face_at(header: dict, x: int, y: int) -> int:
    """The index of the region that holds pixel (x, y); UsageError when none does."""
    for i, (y0, x0, y1, x1) in enumerate(header["regions"]):
        if y0 <= y < y1 and x0 <= x < x1:
            return i
    raise UsageError(f"no masked face at x={x}, y={y}", hint="`imnkit inspect` lists the faces and their boxes")


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
           force: bool = False, faces: list[int] | None = None) -> tuple[np.ndarray, list[str]]:
    """``recover`` after the consistency checks (refused unless ``force``; authentication never skipped)."""
    notes = refuse_unless_forced(consistency_problems(read_header(aux), aux, masked), force)
    recovered, more = recover(masked, aux, source, faces=faces)
    return recovered, notes + more


def recover(masked: np.ndarray, aux: Bundle, source: KeySource | None = None,
            key: bytes | None = None, faces: list[int] | None = None) -> tuple[np.ndarray, list[str]]:
    """The protected photo from a masked one and its aux; (recovered, notes).

    ``key``: the content key of an aux written with ``hide(key=...)`` (kept by the caller).
    ``faces``: recover only these regions (indices); the others stay as masked. None: all.

    Raises AuthenticationError (exit 4) for a wrong key, passphrase, key file or identity, a changed
    aux or changed carrier pixels; UsageError (exit 2) when a passphrase or key file is needed but
    missing, or a face index does not exist.
    """
    header = read_header(aux)
    if (key is not None) != (header["key"].get("wrap") == "external"):
        raise crypto.AuthenticationError()
    boxes = [tuple(int(v) for v in r) for r in header["regions"]]
    h, w = (int(v) for v in header["size"])
    _check_boxes(boxes, h, w)
    chosen = _chosen(faces, len(boxes))
    if header["format"] == 2:
        if faces is not None:
            raise UsageError("this aux was written before faces were sealed one by one: only all faces come off",
                             hint="drop --face")
        key = key if key is not None else unlock_key(header["key"], aux.tensors, source)
        return _recover_v2(masked, aux, header, key, boxes, h, w)
    key = key if key is not None else unlock_key(header["key"], aux.tensors, source, context=header_digest(header))
    entries = header["payloads"]
    stego_boxes = [b for b, e in zip(boxes, entries) if e["carry"] == "stego"]
    maps: dict[int, np.ndarray] = {}
    if stego_boxes:
        if masked.shape[:2] != (h, w):
            raise IntegrityError(f"cannot recover: the image is {masked.shape[1]}x{masked.shape[0]}, "
                                 f"the sealed faces were hidden in a {w}x{h} image")
        packed = tensor_bytes(aux.tensors, "aux.carrier_map")
        if hashlib.sha256(packed).hexdigest() != header["map_sha256"]:
            raise crypto.AuthenticationError()
        try:
            unpacked = carrier.unpack(packed, [(b[2] - b[0], b[3] - b[1]) for b in boxes])
        except IntegrityError:
            raise crypto.AuthenticationError() from None
        maps = {i: m for i, m in enumerate(unpacked)}
    in_aux = _aux_slices(aux, entries)
    ad = associated_data(_authenticated(header))
    notes: list[str] = []
    recovered = _same_size(masked, h, w, notes)
    labels = header.get("face_labels") or list(range(len(boxes)))
    for i in chosen:
        (y0, x0, y1, x1), entry, fkey = boxes[i], entries[i], face_key(key, labels[i])
        if entry["carry"] == "stego":
            try:
                layout = stego.Layout.from_list(entry["layout"])
                samples = carrier.samples(masked, [boxes[i]], [maps[i]])
                ciphertext = stego.extract(samples, _order(fkey, len(samples)), layout, entry["bytes"] + crypto.TAG_BYTES)
            except (KeyError, TypeError, ValueError, IndexError):
                raise crypto.AuthenticationError() from None
        else:
            if "masked_sha256" in entry and entry["masked_sha256"] != hashlib.sha256(
                    np.ascontiguousarray(masked[y0:y1, x0:x1]).tobytes()).hexdigest():
                raise crypto.AuthenticationError()  # a sealed photo's face, pasted onto other pixels
            ciphertext = in_aux[i]
        plaintext = crypto.open_sealed(crypto.subkey(fkey, _PAYLOAD_KEY), _nonce(entry), ciphertext, ad)
        region = payload.decode(plaintext, entry["codec"], (y1 - y0, x1 - x0))
        if entry["carry"] == "stego":  # only the carrier pixels were hidden (and changed): the others are exact
            recovered[y0:y1, x0:x1][maps[i]] = region[maps[i]]
        else:
            recovered[y0:y1, x0:x1] = region
    if faces is not None:
        notes.append(f"face(s) {', '.join(str(i) for i in chosen)} of {len(boxes)} taken off; the others stay masked")
    return recovered, notes


def _chosen(faces: list[int] | None, count: int) -> list[int]:
    if faces is None:
        return list(range(count))
    bad = [f for f in faces if not (isinstance(f, int) and 0 <= f < count)]
    if bad or not faces:
        raise UsageError(f"no face {bad[0] if bad else '(none given)'}: this photo has {count} masked face(s), "
                         f"numbered 0-{count - 1}", hint="`imnkit inspect` lists them")
    return sorted(set(faces))


def _aux_slices(aux: Bundle, entries: list[dict]) -> dict[int, bytes]:
    """Each aux-carried region's ciphertext, cut from ``aux.payload`` in region order."""
    wanted = [(i, e["bytes"] + crypto.TAG_BYTES) for i, e in enumerate(entries) if e["carry"] == "aux"]
    if not wanted:
        return {}
    data = tensor_bytes(aux.tensors, "aux.payload")
    if len(data) != sum(n for _, n in wanted):
        raise crypto.AuthenticationError()
    out, start = {}, 0
    for i, n in wanted:
        out[i], start = data[start : start + n], start + n
    return out


def _recover_v2(masked: np.ndarray, aux: Bundle, header: dict, key: bytes, boxes, h: int, w: int):
    """Format 2 (one content key, one atlas for every region): still read, no longer written."""
    spec = header["payload"]
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
        try:
            maps = carrier.unpack(packed, shapes)
            samples = carrier.samples(masked, boxes, maps)
            layout = stego.Layout.from_list(header["stego"]["layout"])
            ciphertext = stego.extract(samples, _order_v2(key, len(samples)), layout, spec["bytes"] + crypto.TAG_BYTES)
        except (KeyError, TypeError, ValueError, IntegrityError):
            raise crypto.AuthenticationError() from None
    else:
        ciphertext = tensor_bytes(aux.tensors, "aux.payload")
    plaintext = crypto.open_sealed(crypto.subkey(key, _PAYLOAD_KEY), _nonce(header), ciphertext, associated_data(header))
    recovered = _same_size(masked, h, w, notes)
    atlas = payload.decode(plaintext, spec["codec"], tuple(spec["size"]))
    for i, ((y0, x0, y1, x1), region) in enumerate(zip(boxes, payload.unpack_atlas(atlas, spec["places"], shapes))):
        if maps is None:
            recovered[y0:y1, x0:x1] = region
        else:
            recovered[y0:y1, x0:x1][maps[i]] = region[maps[i]]
    return recovered, notes


# -- helpers -------------------------------------------------------------------------------------
def _ints(values, n: int) -> bool:
    return isinstance(values, list) and len(values) == n and all(type(v) is int for v in values)


def _well_formed(header: dict) -> bool:
    """Every field recover() reads has the type it expects (raises on a missing one)."""
    common = (header["method"] in METHODS and _ints(header["size"], 2) and isinstance(header["regions"], list)
              and all(_ints(r, 4) for r in header["regions"]) and isinstance(header["key"], dict))
    if not common:
        return False
    if header["format"] == 2:
        spec = header["payload"]
        return (isinstance(spec["codec"], str) and type(spec["bytes"]) is int and spec["bytes"] >= 0
                and _ints(spec["size"], 2) and isinstance(spec["places"], list)
                and len(spec["places"]) == len(header["regions"]) and all(_ints(p, 2) for p in spec["places"])
                and isinstance(header["nonce"], str)
                and ("stego" not in header or (_ints(header["stego"]["layout"], 3)
                                               and isinstance(header["stego"]["map_sha256"], str))))
    entries, labels = header["payloads"], header.get("face_labels")
    return (isinstance(entries, list) and len(entries) == len(header["regions"])
            and all(_entry_well_formed(e) for e in entries)
            and (labels is None or (isinstance(labels, list) and len(labels) == len(entries)
                                    and all(isinstance(x, str) for x in labels) and len(set(labels)) == len(labels)))
            and (all(e["carry"] == "aux" for e in entries) or isinstance(header["map_sha256"], str)))


def _entry_well_formed(entry) -> bool:
    return (isinstance(entry, dict) and entry["carry"] in ("stego", "aux") and isinstance(entry["codec"], str)
            and type(entry["bytes"]) is int and entry["bytes"] >= 0 and isinstance(entry["nonce"], str)
            and (entry["carry"] == "aux" or _ints(entry["layout"], 3)))


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


_order_v2 = _order  # format 2 drew one order over every region with the content key itself


def _nonce(record: dict) -> bytes:
    try:
        return bytes.fromhex(record["nonce"])
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
            set(aux.meta) != _AUX_META or aux.meta["aux.format"] != header["format"] or \
            not _is_digest(aux.meta["aux.masked_sha256"]) or serialize(aux.tensors, strings) != raw:
        raise crypto.AuthenticationError()


def _is_digest(value) -> bool:
    """A SHA-256 in hex. ``aux.masked_sha256`` is a consistency check, not authenticated (the carrier
    pixels are, by the cipher; ``detached`` does not use it): a malformed one still fails as a change."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
