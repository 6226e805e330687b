"""The aux of a masked clip: one file, one content key, every frame's hidden regions.

Layout (a safetensors bundle, like a photo's aux):

- meta ``aux.kind = "video"`` (the marker ``imnkit extract`` dispatches on), ``aux.method = "video"``
  (so the photo code never takes it for one of its own), ``aux.video`` (the clip header: format,
  method, clip id, frame count, frame size, rotation, key wrapping, manifest nonce, and ``tracks``:
  per tracked person its number, Mask identity, first and last frame and frame count) and ``aux.frames``
  (per frame: the keyed header :func:`imnkit.protect.keyed.hide` wrote, with ``context = {clip, frame}``,
  the sha256 of the masked frame's pixels, ``pts``, its timestamp in the masked clip, in units of
  the clip header's ``time_base``, and ``tracks``: per hidden region, the numbers of the tracks whose
  face it holds);
- tensors: the content key, bare or wrapped (:func:`imnkit.protect.keys.lock_key`, once per clip), each frame's
  carrier map or ciphertext (``aux.f{index}.carrier_map`` / ``aux.f{index}.payload``), and
  ``aux.manifest``: AES-256-GCM over the sha256 of ``aux.frames`` with the clip header as associated data.

So the clip header, the order and number of frames, every frame's header, every masked frame's pixels
and its timestamp are authenticated under the one key: a wrong key, an edited, dropped, added,
reordered or retimed frame, or any change to the aux fails with the one AUTH_FAILED message (exit 4).
Each frame's payload is also sealed on its own (fresh nonce, its index in its authenticated header).

The timestamps are read back from the masked clip once it is written (the muxer rounds them to its
own time base and may shift the whole file so that no stream starts before 0), so they are what a
reader of that clip decodes. Format 1 (imnkit before the timestamps were added) has no ``pts``: such
an aux still opens, and :attr:`OpenedAux.timed` is False. Format 2 has no ``tracks``: it opens too,
but only whole (:attr:`OpenedAux.tracked` is False).

One person at a time: the frame records say which regions hold which track, authenticated by the
manifest, so :meth:`OpenedAux.regions_of` picks the regions of the tracks asked for, frame by frame.
Each region is sealed under the face key of its label (:func:`face_labels`, in the frame's
authenticated header), so a tracked person has the same face key in every frame.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np

from imnkit import __version__
from imnkit.protect import crypto
from imnkit.bundle import Bundle
from imnkit.errors import BundleError, OutputError
from imnkit.protect.keyed import associated_data
from imnkit.protect.keys import KeySource, bytes_tensor, lock_key, tensor_bytes, unlock_key

VIDEO_AUX_FORMAT = 3  # 3: which regions hold which tracked person; 2: each frame's timestamp authenticated
KIND = "video"
_MANIFEST_KEY = "imnkit.video-manifest"
_FRAME_TENSORS = ("carrier_map", "payload")


def face_labels(region_tracks: list[list[int]]) -> list[str]:
    """Each region's label for its face key (:func:`imnkit.protect.keyed.face_key`): ``t3`` for track 3,
    so one person has one face key in every frame; ``t1+2`` for a region that holds two (merged: they
    overlap); ``r0`` for a region that holds no tracked face (not expected). Unique within a frame:
    regions do not overlap, and each face lies in one."""
    return ["t" + "+".join(map(str, sorted(t))) if t else f"r{i}" for i, t in enumerate(region_tracks)]


def is_video_aux(aux: Bundle) -> bool:
    return aux.meta.get("aux.kind") == KIND


class AuxWriter:
    """Collects the frames' aux pieces while a clip is masked; :meth:`finish` seals the manifest."""

    def __init__(self, method: str, size: tuple[int, int], rotation: int, source: KeySource | None,
                 tracks: list[dict] | None = None):
        self.key = crypto.new_key()
        key_public, self.tensors = lock_key(self.key, source)
        self.clip = crypto.new_nonce().hex()  # names this clip in every frame's authenticated header
        self.header = {"format": VIDEO_AUX_FORMAT, "method": method, "clip": self.clip, "size": list(size),
                       "rotation": rotation, "key": key_public, "written_by": __version__, "tracks": tracks or []}
        self.frames: dict[int, dict] = {}  # by index: frames may be masked a few at a time, out of order

    def context(self, index: int) -> dict:
        """The fields authenticated in frame ``index``'s header."""
        return {"clip": self.clip, "frame": index}

    def add(self, index: int, frame_aux: Bundle, masked_digest: str, tracks: list[list[int]]) -> None:
        """Keep frame ``index``'s aux (from the embed stage: header + carrier map or ciphertext) and, per
        region of its header, the numbers of the tracks whose face it holds."""
        for name in _FRAME_TENSORS:
            if f"aux.{name}" in frame_aux.tensors:
                self.tensors[f"aux.f{index}.{name}"] = frame_aux.tensors[f"aux.{name}"]
        self.frames[index] = {"header": frame_aux.meta["aux.header"], "masked_sha256": masked_digest,
                              "tracks": tracks}

    @property
    def regions(self) -> int:
        """Face regions hidden so far, over all frames."""
        return sum(len(f["header"]["regions"]) for f in self.frames.values())

    def finish(self, timestamps: list[int], time_base: Fraction) -> Bundle:
        """The aux bundle, with the manifest sealing the frame list under the clip header.

        ``timestamps``: each frame's pts in the written masked clip, in units of ``time_base``.
        """
        frames = [self.frames[i] for i in range(len(self.frames))]  # KeyError: a frame is missing
        if len(timestamps) != len(frames) or any(t is None for t in timestamps):
            raise OutputError(f"the masked clip reads back {len(timestamps)} timestamps for {len(frames)} frames")
        for record, pts in zip(frames, timestamps):
            record["pts"] = int(pts)
        self.header["frames"] = len(frames)
        self.header["time_base"] = str(Fraction(time_base))
        tensors = {**self.tensors, "aux.manifest": bytes_tensor(seal_manifest(self.key, self.header, frames))}
        meta = {"aux.kind": KIND, "aux.format": VIDEO_AUX_FORMAT, "aux.method": KIND, "aux.video": self.header,
                "aux.frames": frames}
        return Bundle(tensors=tensors, meta=meta)


def seal_manifest(key: bytes, header: dict, frames: list[dict]) -> bytes:
    """The manifest: the sha256 of the frame list sealed under ``key``'s manifest subkey with ``header`` as
    associated data; sets ``header["manifest_nonce"]`` (fresh) first, as it is part of that data."""
    digest = hashlib.sha256(associated_data({"frames": frames})).digest()
    nonce = crypto.new_nonce()
    header["manifest_nonce"] = nonce.hex()
    _, sealed = crypto.seal(crypto.subkey(key, _MANIFEST_KEY), digest, associated_data(header), nonce)
    return sealed


def rekey(aux: Bundle, source: KeySource, recipients: list) -> Bundle:
    """``aux`` (sealed to recipients) with its content key sealed to ``recipients`` instead.

    ``source`` holds the old identities; AuthenticationError when none opens it, or the aux was changed.
    The frames' records, payloads and carrier maps stay byte for byte (the masked frames need no change);
    the clip header's ``key`` entry is replaced and the manifest sealed again over it.
    """
    from imnkit.protect.recipients import seal_to

    opened = OpenedAux(aux, source)  # authenticates: the manifest under the content key
    if opened.header["key"].get("wrap") != "recipients":
        raise crypto.AuthenticationError()  # rekey opens with an identity: an aux locked otherwise is refused
    header = {**opened.header, "key": {"wrap": "recipients", "recipients": seal_to(opened.key, recipients, b"")}}
    manifest = seal_manifest(opened.key, header, opened.frames)
    return Bundle(tensors={**aux.tensors, "aux.manifest": bytes_tensor(manifest)}, meta={**aux.meta, "aux.video": header})


class OpenedAux:
    """A video aux whose manifest authenticated: the key, the header and the frames' records."""

    def __init__(self, aux: Bundle, source: KeySource | None):
        where = aux.source or "the aux"
        header, frames = aux.meta.get("aux.video"), aux.meta.get("aux.frames")
        if not isinstance(header, dict) or not isinstance(frames, list):
            raise BundleError(f"{where}: the video aux is incomplete or corrupt")
        fmt = header.get("format")
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise crypto.AuthenticationError()  # never written so: a changed header
        if fmt > VIDEO_AUX_FORMAT:
            raise BundleError(f"{where}: video aux format {fmt} is newer than this imnkit reads", hint="upgrade imnkit")
        if not isinstance(header.get("key"), dict):
            raise crypto.AuthenticationError()
        self.key = unlock_key(header["key"], aux.tensors, source)
        try:
            nonce = bytes.fromhex(header["manifest_nonce"])
        except (KeyError, TypeError, ValueError):
            raise crypto.AuthenticationError() from None
        digest = crypto.open_sealed(crypto.subkey(self.key, _MANIFEST_KEY), nonce,
                                    tensor_bytes(aux.tensors, "aux.manifest"), associated_data(header))
        if hashlib.sha256(associated_data({"frames": frames})).digest() != digest or header.get("frames") != len(frames):
            raise crypto.AuthenticationError()
        self.header, self.frames, self._tensors = header, frames, aux.tensors
        self.timed = fmt >= 2  # format 1 has no timestamps
        self.tracked = fmt >= 3  # format 2 does not say which region holds whom
        self.tracks = header.get("tracks", []) if self.tracked else []
        if not isinstance(self.tracks, list):
            raise crypto.AuthenticationError()
        if self.timed:
            try:
                self._time_base = Fraction(header["time_base"])
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                raise crypto.AuthenticationError() from None

    def time_matches(self, index: int, when: Fraction | None) -> bool:
        """Whether frame ``index`` is shown at the time written there (``when``: seconds, as decoded).

        An exact comparison of rational times, so a copy in another container with another time base
        but the same times (a remux) still matches; an aux of format 1 has no times to compare: True.
        """
        if not self.timed:
            return True
        pts = self.frames[index].get("pts") if index < len(self.frames) else None
        return isinstance(pts, int) and when is not None and pts * self._time_base == when

    def matches(self, index: int, masked_digest: str) -> bool:
        """Whether frame ``index`` is exactly the masked frame written there."""
        return index < len(self.frames) and self.frames[index].get("masked_sha256") == masked_digest

    def frame_aux(self, index: int, masked_digest: str | None) -> Bundle:
        """Frame ``index``'s aux as :func:`imnkit.protect.keyed.recover` reads it; AuthenticationError if the
        masked frame is not the one written there (``masked_digest`` None: not checked, for a detached
        clip's re-encoded copy), or the frame's header names another clip or place."""
        if index >= len(self.frames):
            raise crypto.AuthenticationError()  # more frames than were masked
        record = self.frames[index]
        header = record.get("header")
        if (masked_digest is not None and record.get("masked_sha256") != masked_digest) or \
                not isinstance(header, dict) or header.get("context") != {"clip": self.header["clip"], "frame": index}:
            raise crypto.AuthenticationError()
        try:
            tensors = {"aux.regions": np.array(header["regions"], dtype=np.int64).reshape(-1, 4),
                       "aux.size": np.array(header["size"], dtype=np.int64)}
        except (KeyError, TypeError, ValueError):
            raise crypto.AuthenticationError() from None
        for name in _FRAME_TENSORS:
            if f"aux.f{index}.{name}" in self._tensors:
                tensors[f"aux.{name}"] = self._tensors[f"aux.f{index}.{name}"]
        return Bundle(tensors=tensors, meta={"aux.method": header.get("method"), "aux.header": header})

    @property
    def regions(self) -> int:
        return sum(len(f["header"].get("regions", [])) for f in self.frames)

    def regions_of(self, index: int, wanted: set[int]) -> tuple[list[int], int]:
        """The regions of frame ``index`` that hold only tracks in ``wanted``, and how many more hold one
        of them together with a track not asked for (left masked: they would show that person too)."""
        record = self.frames[index] if index < len(self.frames) else {}
        tracks, regions = record.get("tracks"), record.get("header", {}).get("regions")
        if not isinstance(tracks, list) or not isinstance(regions, list) or len(tracks) != len(regions) or \
                not all(isinstance(t, list) and all(type(n) is int for n in t) for t in tracks):
            raise crypto.AuthenticationError()  # never written so
        chosen = [i for i, t in enumerate(tracks) if t and set(t) <= wanted]
        shared = sum(1 for t in tracks if set(t) & wanted and not set(t) <= wanted)
        return chosen, shared

