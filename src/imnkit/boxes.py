"""Region boxes ``(y0, x0, y1, x1)``, end-exclusive: grown to even sides, merged, united.

Torch-free, so the keyed path (align, swap, sealed embed) runs without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import UsageError

Box = tuple[int, int, int, int]


def even_box(box: Box, height: int, width: int, margin: int = 0) -> Box:
    """Grow a y0,x0,y1,x1 box by ``margin``, clip it to the image and make every side even.

    The Haar DWT needs even sides; even corners keep the wavelet grid aligned with the image.
    Raises UsageError for a box that is empty after clipping or an image smaller than 2x2.
    """
    y0, x0, y1, x1 = (int(v) for v in box)
    y0, x0 = max(0, y0 - margin), max(0, x0 - margin)
    y1, x1 = min(height, y1 + margin), min(width, x1 + margin)
    y0, x0 = y0 - (y0 % 2), x0 - (x0 % 2)
    y1, x1 = y1 + (y1 % 2), x1 + (x1 % 2)
    if y1 > height:  # odd image height: move the box up instead of past the edge
        y1 -= 2
    if x1 > width:
        x1 -= 2
    if y1 - y0 < 2 or x1 - x0 < 2:
        raise UsageError(f"region {box} is too small to embed in a {width}x{height} image")
    return y0, x0, y1, x1


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Merge overlapping boxes until none overlap, so regions can be hidden independently."""
    boxes = [tuple(b) for b in boxes]
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for b in boxes:
            for i, o in enumerate(out):
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    out[i] = (min(b[0], o[0]), min(b[1], o[1]), max(b[2], o[2]), max(b[3], o[3]))
                    changed = True
                    break
            else:
                out.append(b)
        boxes = out
    return sorted(boxes)


def union_box(boxes: Sequence[Box]) -> Box:
    """The smallest box holding every non-empty box of ``boxes`` (empty when there is none)."""
    live = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    if not live:
        return (0, 0, 0, 0)
    return (min(b[0] for b in live), min(b[1] for b in live), max(b[2] for b in live), max(b[3] for b in live))
