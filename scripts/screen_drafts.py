#!/usr/bin/env python
"""Does a large face's shrunk draft Mask tell its full-size Mask's dlib distance? (swap.SCREEN_MARGIN)

For every face of ``--faces DIR`` larger than the swap's expression passes work at
(``swap.PASS_FACE_SIZE``), the first ``--identities`` pool identities its look ranks best are
swapped twice: on a copy of the photo shrunk as the passes shrink it (``INTER_AREA``, points
mapped by ``(p + 0.5) * s - 0.5``) and on the photo itself. Both Masks' dlib distances to the
protected face are printed, with the range of their difference: the swap passes over an identity
whose draft reads ``SCREEN_MARGIN`` closer than ``min_distance``, and trusts one whose draft reads
``CLEAR_MARGIN`` farther, so that range must stay inside both margins.

Usage:
    python scripts/screen_drafts.py --faces ../shared/data/faces [--identities 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.face import swap  # noqa: E402
from imnkit.face.descriptors import descriptor_distance, face_descriptor  # noqa: E402
from imnkit.face.detect import Face, detect_faces, fit_landmarks, make_face, predictor_box  # noqa: E402
from imnkit.face.identities import get_identity, load_pool, skin_tone  # noqa: E402
from imnkit.face.looks import descriptor_salt, estimate_look, rank_by_look  # noqa: E402
from imnkit.imageio import load_image  # noqa: E402


def face_size(lm: np.ndarray) -> float:
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    return float(np.hypot(*(hi - lo)) / np.sqrt(2))


def shrunk(image: np.ndarray, face: Face, s: float) -> tuple[np.ndarray, Face]:
    """The photo and the face as the swap's passes see them at scale ``s``."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    box = tuple(int(v * s) for v in face.box)
    return small, make_face((np.asarray(face.landmarks, np.float64) + 0.5) * s - 0.5, box)


def mask_distance(image: np.ndarray, face: Face, prot_desc: np.ndarray, name: str,
                  params: swap.SwapParams = swap.SwapParams()) -> float:
    out, _ = swap.swap_face(image, face, get_identity(name), params)
    again = make_face(fit_landmarks(out, predictor_box(face)), face.box)
    return descriptor_distance(prot_desc, face_descriptor(out, again))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=Path, required=True)
    ap.add_argument("--identities", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for path in sorted(p for p in args.faces.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        image = load_image(path)
        for i, face in enumerate(detect_faces(image, upsample=0).faces):
            s = swap.PASS_FACE_SIZE / face_size(np.asarray(face.landmarks))
            if face.treatment != "swap" or s >= 1.0:
                continue
            prot_desc = face_descriptor(image, face)
            look = estimate_look(prot_desc, face.landmarks, skin_tone(image, face.landmarks))
            small, small_face = shrunk(image, face, s)
            for name in rank_by_look(look, load_pool(), 0, descriptor_salt(prot_desc))[: args.identities]:
                row = {"photo": path.name, "face": i, "identity": name, "scale": round(s, 3),
                       "draft": round(mask_distance(small, small_face, prot_desc, name), 3),
                       "full": round(mask_distance(image, face, prot_desc, name), 3)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    diffs = [r["draft"] - r["full"] for r in rows]
    summary = {"pairs": len(rows), "faces": len({(r["photo"], r["face"]) for r in rows}),
               "draft_minus_full_min": round(min(diffs), 3), "draft_minus_full_max": round(max(diffs), 3),
               "screen_margin": swap.SCREEN_MARGIN, "clear_margin": swap.CLEAR_MARGIN}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
