"""(protected, Mask) training pairs made by the real front end: a photo and its swap-stage Mask.

NOTES.md measured that pairs resembling real ones train far better than unrelated crops. The most
realistic pairs are the real thing: each training photo with faces is run once through detection
and the classical swap (the default recipe's align + swap), and crops are drawn around the swapped
faces, at the same place in the photo and in its Mask, with the same flip and colour jitter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from imnkit.train.data import _randint, _uniform

log = logging.getLogger(__name__)


class SwapPairs:
    """Crops around swapped faces of (photo, Mask) pairs; see the module docstring."""

    def __init__(self, pairs: Sequence[tuple[torch.Tensor, torch.Tensor, Sequence[tuple[int, int, int, int]]]],
                 window: tuple[float, float] = (0.35, 1.3), jitter: float = 0.1):
        self.pairs = [(p, m, list(boxes)) for p, m, boxes in pairs if boxes]
        if not self.pairs:
            raise ValueError("SwapPairs needs at least one photo with a swapped face")
        self.window = window
        self.jitter = jitter

    @classmethod
    def from_images(cls, images: Sequence[torch.Tensor], seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> "SwapPairs":
        """Run detection + classical swap on each (3, H, W) uint8 image; photos without a face are left out."""
        from imnkit.face.detect import detect_faces
        from imnkit.face.swap import swap_faces

        pairs = []
        for i, img in enumerate(images):
            arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
            try:
                faces = detect_faces(arr).faces
                if faces:
                    res = swap_faces(arr, faces, seed=seed + i, min_distance=None)
                    boxes = [b for b in res.face_regions if b is not None]
                    if boxes:
                        pairs.append((img, torch.from_numpy(res.image).permute(2, 0, 1).contiguous(), boxes))
            except Exception as err:  # one odd photo must not stop the data build
                log.warning("swap pairs: photo %d skipped (%s)", i, type(err).__name__)
            if progress:
                progress(i + 1, len(images))
        log.info("swap pairs: %d of %d photos have swapped faces", len(pairs), len(images))
        return cls(pairs)

    def _one(self, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        prot, mask, boxes = self.pairs[_randint(gen, len(self.pairs))]
        y0, x0, y1, x1 = boxes[_randint(gen, len(boxes))]
        h, w = prot.shape[-2:]
        face = max(y1 - y0, x1 - x0)
        size = int(min(h, w, max(crop // 2, round(face * float(_uniform(gen, *self.window))))))
        cy = (y0 + y1) / 2 + float(_uniform(gen, -0.3, 0.3)) * face
        cx = (x0 + x1) / 2 + float(_uniform(gen, -0.3, 0.3)) * face
        top = int(min(max(0, round(cy - size / 2)), h - size))
        left = int(min(max(0, round(cx - size / 2)), w - size))
        pair = torch.stack([prot, mask])[:, :, top : top + size, left : left + size].float().div_(255.0)
        if size != crop:
            pair = F.interpolate(pair, size=(crop, crop), mode="bilinear", antialias=size > crop, align_corners=False)
        if float(torch.rand(1, generator=gen)) < 0.5:
            pair = pair.flip(-1)
        if self.jitter > 0:  # the same colour change on both, as a different camera would make
            bright, contrast = (1.0 + _uniform(gen, -self.jitter, self.jitter, 2)).tolist()
            mean = pair[0].mean()
            pair = ((pair - mean) * contrast + mean) * bright
        pair = pair.clamp_(0.0, 1.0)
        return pair[0], pair[1]

    def __call__(self, batch: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        prots, masks = zip(*(self._one(crop, gen) for _ in range(batch)))
        return torch.stack(prots), torch.stack(masks)
