"""(protected, Mask) training pairs made by the real front end: a photo and its swap-stage Mask.

NOTES.md measured that pairs resembling real ones train far better than unrelated crops. The most
realistic pairs are the real thing: each training photo with faces is run once through detection
and the classical swap (the default recipe's align + swap), and crops are drawn around the swapped
faces, at the same place in the photo and in its Mask, with the same flip and colour jitter.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imnkit.errors import InputError
from imnkit.imageio import atomic_output
from imnkit.train.data import rand_index, rand_uniform

CACHE_FORMAT = "imnkit.swap_pairs/1"

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
                    progress: Callable[[int, int], None] | None = None) -> SwapPairs:
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

    def to(self, device: str | torch.device) -> SwapPairs:
        """Move the decoded pairs (uint8) to ``device`` so crops are cut there (cheap on a GPU)."""
        self.pairs = [(p.to(device), m.to(device), boxes) for p, m, boxes in self.pairs]
        return self

    def save(self, path: str | Path, jpeg_quality: int = 95) -> Path:
        """Write the pairs compactly: each photo as JPEG, each Mask only where it differs, as PNG.

        Building the pairs needs dlib and minutes of CPU; the cache lets a machine without either (a
        lent GPU) train on them. The photo is stored lossy to fit (318 photos: tens of MB, not hundreds);
        :meth:`load` rebuilds the Mask as the decoded photo with the lossless Mask boxes pasted in, so
        outside the swapped boxes protected and Mask stay exactly equal, as in real pairs.
        """
        from PIL import Image

        tensors: dict[str, torch.Tensor] = {}
        boxes_meta = []
        for i, (prot, mask, boxes) in enumerate(self.pairs):
            buf = io.BytesIO()
            Image.fromarray(prot.permute(1, 2, 0).cpu().numpy()).save(buf, "JPEG", quality=jpeg_quality, subsampling=0)
            tensors[f"photo.{i:05d}"] = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
            for j, (y0, x0, y1, x1) in enumerate(boxes):
                buf = io.BytesIO()
                Image.fromarray(mask[:, y0:y1, x0:x1].permute(1, 2, 0).cpu().numpy()).save(buf, "PNG")
                tensors[f"mask.{i:05d}.{j:02d}"] = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
            boxes_meta.append([list(map(int, b)) for b in boxes])
        from safetensors.torch import save_file

        with atomic_output(path, overwrite=True) as tmp:
            save_file(tensors, str(tmp), metadata={"format": CACHE_FORMAT, "boxes": json.dumps(boxes_meta)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> SwapPairs:
        """Read a cache written by :meth:`save`."""
        from PIL import Image
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != CACHE_FORMAT:
                raise InputError(f"{Path(path).name} is not a swap-pairs cache", hint="write one with --pairs-cache")
            boxes_meta = json.loads(meta["boxes"])

            def decode(name: str) -> torch.Tensor:
                with Image.open(io.BytesIO(f.get_tensor(name).numpy().tobytes())) as im:
                    return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()

            pairs = []
            for i, boxes in enumerate(boxes_meta):
                prot = decode(f"photo.{i:05d}")
                mask = prot.clone()
                for j, (y0, x0, y1, x1) in enumerate(boxes):
                    mask[:, y0:y1, x0:x1] = decode(f"mask.{i:05d}.{j:02d}")
                pairs.append((prot, mask, [tuple(b) for b in boxes]))
        return cls(pairs, **kwargs)

    def _one(self, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        prot, mask, boxes = self.pairs[rand_index(gen, len(self.pairs))]
        y0, x0, y1, x1 = boxes[rand_index(gen, len(boxes))]
        h, w = prot.shape[-2:]
        face = max(y1 - y0, x1 - x0)
        size = int(min(h, w, max(crop // 2, round(face * float(rand_uniform(gen, *self.window))))))
        cy = (y0 + y1) / 2 + float(rand_uniform(gen, -0.3, 0.3)) * face
        cx = (x0 + x1) / 2 + float(rand_uniform(gen, -0.3, 0.3)) * face
        top = int(min(max(0, round(cy - size / 2)), h - size))
        left = int(min(max(0, round(cx - size / 2)), w - size))
        pair = torch.stack([prot, mask])[:, :, top : top + size, left : left + size].float().div_(255.0)
        if size != crop:
            pair = F.interpolate(pair, size=(crop, crop), mode="bilinear", antialias=size > crop, align_corners=False)
        if float(torch.rand(1, generator=gen)) < 0.5:
            pair = pair.flip(-1)
        if self.jitter > 0:  # the same colour change on both, as a different camera would make
            bright, contrast = (1.0 + rand_uniform(gen, -self.jitter, self.jitter, 2)).tolist()
            mean = pair[0].mean()
            pair = ((pair - mean) * contrast + mean) * bright
        pair = pair.clamp_(0.0, 1.0)
        return pair[0], pair[1]

    def __call__(self, batch: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        prots, masks = zip(*(self._one(crop, gen) for _ in range(batch)))
        return torch.stack(prots), torch.stack(masks)
