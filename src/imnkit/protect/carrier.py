"""Which pixels of a face region carry a sealed payload: the ones the Mask changed.

Inside a region box, pixels the swap left as they were (corners, margin) are equal in the
protected photo and the Mask photo. Leaving them untouched keeps them bit-exact through the round
trip, so only the changed pixels need to be hidden, and only they carry the hidden bits.

The carrier map is the changed set closed and with its holes filled, so it outlines the pasted
Mask (which the masked photo shows anyway) and never tells where a single protected pixel happens
to equal the Mask's. It travels in the aux, packed with zlib, authenticated with the payload.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from ..errors import IntegrityError


def carrier_map(protected: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of a region that the Mask changed, closed, holes filled."""
    changed = np.any(protected != mask, axis=2).astype(np.uint8)
    if not changed.any():
        return changed.astype(bool)
    closed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    # holes: background not reachable from the border (a 1-px frame around the region)
    frame = np.pad(closed, 1)
    outside = np.zeros((frame.shape[0] + 2, frame.shape[1] + 2), np.uint8)
    cv2.floodFill(frame, outside, (0, 0), 2)
    return (frame[1:-1, 1:-1] != 2) | changed.astype(bool)


def pack(maps: list[np.ndarray]) -> bytes:
    """The maps, row-major bits, concatenated and zlib-packed."""
    bits = np.concatenate([m.reshape(-1) for m in maps]) if maps else np.zeros(0, bool)
    return zlib.compress(np.packbits(bits).tobytes(), 9)


def unpack(data: bytes, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Inverse of :func:`pack` for regions of ``shapes``; IntegrityError if the data does not fit."""
    total = sum(h * w for h, w in shapes)
    try:
        raw = zlib.decompress(data, bufsize=total // 8 + 1)
    except zlib.error:
        raise IntegrityError("the aux's carrier map is corrupt") from None
    bits = np.unpackbits(np.frombuffer(raw, np.uint8))
    if len(bits) < total or len(raw) != (total + 7) // 8:
        raise IntegrityError("the aux's carrier map is corrupt")
    out, start = [], 0
    for h, w in shapes:
        out.append(bits[start : start + h * w].reshape(h, w).astype(bool))
        start += h * w
    return out


def samples(image: np.ndarray, boxes, maps: list[np.ndarray]) -> np.ndarray:
    """The (N,) uint8 samples of the mapped pixels, region after region, (pixel, channel) order."""
    parts = [image[y0:y1, x0:x1][m].reshape(-1) for (y0, x0, y1, x1), m in zip(boxes, maps)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def put_samples(image: np.ndarray, boxes, maps: list[np.ndarray], values: np.ndarray) -> None:
    """Write ``values`` back to the mapped pixels of ``image`` (in place), inverse of :func:`samples`."""
    start = 0
    for (y0, x0, y1, x1), m in zip(boxes, maps):
        n = int(m.sum()) * 3
        image[y0:y1, x0:x1][m] = values[start : start + n].reshape(-1, 3)
        start += n


def smooth_outside(region: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``region`` with the pixels outside ``keep`` replaced by a blur (cheap to compress; never used)."""
    if keep.all():
        return region
    # A shrink and enlarge: as smooth as a wide blur for the codec, at a tenth of its cost.
    h, w = region.shape[:2]
    small = cv2.resize(region, (max(1, w // 16), max(1, h // 16)), interpolation=cv2.INTER_AREA)
    blurred = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(keep[..., None], region, blurred)
