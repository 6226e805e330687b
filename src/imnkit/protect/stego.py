"""Hide bytes in 8-bit pixels with ternary Hamming (matrix) codes, in a keyed order.

Each sample (one channel of one pixel) carries its value mod 3. A group of ``n = (3^p - 1) / 2``
samples carries ``p`` trits as the syndrome ``H x mod 3`` of a ternary Hamming code, where the
columns of ``H`` are the nonzero vectors of GF(3)^p whose first nonzero entry is 1. Any syndrome
is reached by changing at most one sample of the group by +1 or -1, so a group of 4 samples carries
3.17 bits for 0.89 changes on average (p = 2), and a single sample 1.58 bits for 0.67 (p = 1).
A payload is laid out over *all* carrier samples with the most economical mix of two adjacent
codes that fits, so a smaller payload costs fewer changes.

The order of the samples is a permutation of the carrier's pixels drawn from a keyed stream (the
caller passes the stream; see :func:`imnkit.crypto.keystream`): without the key the positions are
unknown. What is hidden should already be ciphertext: this module adds no secrecy of its own.

Convention:
    carrier: (N,) uint8, the samples of the carrier pixels in row-major (pixel, channel) order;
    N is a multiple of 3. A +1 on 255 is done as -2 and a -1 on 0 as +2 (the same residue mod 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from ..errors import UsageError

_BITS, _TRITS = 19, 12  # 2^19 <= 3^12: 19 bits travel as 12 trits (99.9 % of the trits' capacity)
MAX_P = 5


def group_size(p: int) -> int:
    return (3**p - 1) // 2


def _code(p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H (p, n), column index and +-1 change per syndrome difference (3^p,)) of the code with ``p`` trits."""
    cols = [v for v in product(range(3), repeat=p) if any(v) and v[next(i for i, x in enumerate(v) if x)] == 1]
    h = np.array(cols, dtype=np.int64).T
    powers = 3 ** np.arange(p)
    column = np.zeros(3**p, dtype=np.int64)
    change = np.zeros(3**p, dtype=np.int64)
    for j, col in enumerate(cols):
        for c, delta in ((1, 1), (2, -1)):  # c * column reached by a change of +1 or -1 (2 = -1 mod 3)
            index = int(((c * np.array(col)) % 3) @ powers)
            column[index], change[index] = j, delta
    return h, column, change


_CODES = {p: _code(p) for p in range(1, MAX_P + 1)}


@dataclass(frozen=True)
class Layout:
    """``dense`` groups of the code with ``p`` trits, then ``sparse`` groups of the code with ``p + 1``."""

    p: int
    dense: int
    sparse: int

    @property
    def trits(self) -> int:
        return self.dense * self.p + self.sparse * (self.p + 1)

    @property
    def samples(self) -> int:
        return self.dense * group_size(self.p) + self.sparse * group_size(self.p + 1)

    def to_list(self) -> list[int]:
        return [self.p, self.dense, self.sparse]

    @classmethod
    def from_list(cls, values) -> Layout:
        p, dense, sparse = (int(v) for v in values)
        if not (1 <= p < MAX_P and dense >= 0 and sparse >= 0):
            raise ValueError("bad layout")
        return cls(p, dense, sparse)


def trits_for(nbytes: int) -> int:
    """How many trits carry ``nbytes`` bytes."""
    return -(-nbytes * 8 // _BITS) * _TRITS


def capacity_bytes(samples: int) -> int:
    """The most bytes ``samples`` carrier samples can hold (every sample in a 1-trit group)."""
    return (samples // _TRITS) * _BITS // 8


def plan(samples: int, trits: int) -> Layout:
    """The layout carrying ``trits`` over ``samples`` samples with the fewest expected changes.

    Raises UsageError when even one trit per sample is not enough.
    """
    if trits > samples:
        raise UsageError(f"the payload needs {trits} trits but the carrier has only {samples} samples")
    p = 1
    while p + 1 < MAX_P and (samples // group_size(p + 1)) * (p + 1) >= trits:
        p += 1
    n_dense, n_sparse = group_size(p), group_size(p + 1)
    # as many sparse (cheaper per trit) groups as still leave room for the rest in dense ones
    lo, hi = 0, samples // n_sparse
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid * (p + 1) + ((samples - mid * n_sparse) // n_dense) * p >= trits:
            lo = mid
        else:
            hi = mid - 1
    sparse = lo
    dense = min((samples - sparse * n_sparse) // n_dense, max(0, -(-(trits - sparse * (p + 1)) // p)))
    return Layout(p, dense, sparse)


def bytes_to_trits(data: bytes) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    bits = np.concatenate([bits, np.zeros(-len(bits) % _BITS, dtype=np.uint8)]).reshape(-1, _BITS)
    values = bits.astype(np.int64) @ (1 << np.arange(_BITS - 1, -1, -1, dtype=np.int64))
    return ((values[:, None] // 3 ** np.arange(_TRITS, dtype=np.int64)) % 3).reshape(-1)


def trits_to_bytes(trits: np.ndarray, nbytes: int) -> bytes:
    values = trits.reshape(-1, _TRITS).astype(np.int64) @ 3 ** np.arange(_TRITS, dtype=np.int64)
    values &= (1 << _BITS) - 1  # a changed carrier can give values past 2^19; the cipher rejects them
    bits = ((values[:, None] >> np.arange(_BITS - 1, -1, -1, dtype=np.int64)) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1))[:nbytes].tobytes()


def sample_order(stream: bytes, pixels: int) -> np.ndarray:
    """The keyed order of all ``3 * pixels`` samples: a permutation of the pixels, channels in turn.

    ``stream``: at least ``8 * pixels`` bytes of a keyed pseudo-random stream.
    """
    keys = np.frombuffer(stream, dtype=np.uint64, count=pixels)
    # The order is the stable argsort's. Random 64-bit keys tie with probability ~n^2 / 2^65, and
    # without ties every sort gives the same order: the default (SIMD) sort is 4x faster here; a
    # tie, found in one pass, falls back to the stable sort, so the order never depends on the kind.
    order = np.argsort(keys)
    ranked = keys[order]
    if pixels > 1 and bool((ranked[1:] == ranked[:-1]).any()):
        order = np.argsort(keys, kind="stable")
    return (order[:, None] * 3 + np.arange(3)).reshape(-1)


def _groups(order: np.ndarray, layout: Layout):
    """(p, sample indices (groups, n)) for the dense then the sparse part of the layout."""
    start = 0
    for p, count in ((layout.p, layout.dense), (layout.p + 1, layout.sparse)):
        n = group_size(p)
        yield p, order[start : start + count * n].reshape(count, n)
        start += count * n


def embed(carrier: np.ndarray, order: np.ndarray, payload: bytes) -> tuple[np.ndarray, Layout]:
    """Hide ``payload`` in a copy of ``carrier`` along ``order``; returns the new samples and the layout."""
    trits = bytes_to_trits(payload)
    layout = plan(len(carrier), len(trits))
    out = carrier.astype(np.int16)
    used = 0
    for p, idx in _groups(order, layout):
        if not len(idx):
            continue
        h, column, change = _CODES[p]
        syndrome = (out[idx] % 3) @ h.T % 3
        want = syndrome.copy().reshape(-1)
        take = min(len(want), len(trits) - used)
        want[:take] = trits[used : used + take]  # groups past the payload keep their syndrome: no change
        used += take
        diff = (want.reshape(-1, p) - syndrome) % 3 @ 3 ** np.arange(p)
        rows = np.nonzero(diff)[0]
        target = idx[rows, column[diff[rows]]]
        delta = change[diff[rows]]
        values = out[target] + delta
        values[values > 255] = 253  # +1 on 255 -> -2
        values[values < 0] = 2  # -1 on 0 -> +2
        out[target] = values
    return out.astype(np.uint8), layout


def extract(carrier: np.ndarray, order: np.ndarray, layout: Layout, nbytes: int) -> bytes:
    """The ``nbytes`` hidden along ``order`` with ``layout`` (garbage, not an error, if changed)."""
    if layout.samples > len(carrier) or layout.trits < trits_for(nbytes):
        raise ValueError("the layout does not fit this carrier and payload")
    parts = []
    for p, idx in _groups(order, layout):
        if len(idx):
            h = _CODES[p][0]
            parts.append(((carrier[idx].astype(np.int64) % 3) @ h.T % 3).reshape(-1))
    trits = np.concatenate(parts)[: trits_for(nbytes)]
    return trits_to_bytes(trits, nbytes)


def expected_changes(layout: Layout) -> float:
    """Expected number of changed samples (a random syndrome misses the target with probability 1 - 3^-p)."""
    return layout.dense * (1 - 3.0**-layout.p) + layout.sparse * (1 - 3.0 ** -(layout.p + 1))


def max_bytes(samples: int, changes: float) -> int:
    """The most bytes ``samples`` carrier samples hold with at most ``changes`` expected changes."""
    lo, hi = 0, capacity_bytes(samples)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if expected_changes(plan(samples, trits_for(mid))) <= changes:
            lo = mid
        else:
            hi = mid - 1
    return lo
