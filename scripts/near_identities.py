#!/usr/bin/env python
"""Does a pool identity's own distance to a face tell whether its Mask will hide the face? (swap.NEAR_IDENTITY_MARGIN)

For the first face of ``--photos`` training photos drawn at random (seeded) from ``--train``,
leaving out the pool's contributors and the look model's labelled photos, the first
``--identities`` pool identities its look ranks best are swapped on, as the swap drafts them (a
large face on the photo shrunk to ``swap.PASS_FACE_SIZE``): once as first drawn and once with the
layout pushed (``geometry`` x ``swap.PUSH_GEOMETRY``). Printed per
band of the identity's own dlib distance to the face (its stored descriptor): how many Masks
read >= 0.6 from the face, and how many only with the push (twice the drafting). The swap tries
identities reading under ``min_distance + swap.NEAR_IDENTITY_MARGIN`` after the others.

Usage:
    python scripts/near_identities.py [--train ../shared/data/train_faces] [--photos 70] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "scripts"))

from build_identities import EXTRA_LABELLED, PEOPLE, load_rgb, shared_dir  # noqa: E402
from screen_drafts import face_size, mask_distance, shrunk  # noqa: E402
from imnkit.face import swap  # noqa: E402
from imnkit.face.descriptors import descriptor_distance, face_descriptor  # noqa: E402
from imnkit.face.detect import detect_faces  # noqa: E402
from imnkit.face.identities import get_identity, load_pool, skin_tone  # noqa: E402
from imnkit.face.looks import descriptor_salt, estimate_look, rank_by_look  # noqa: E402

BANDS = (0.0, 0.63, 0.66, 0.69, 0.72, 0.8, 9.0)


def photos(train: Path, count: int, seed: int) -> list[Path]:
    """``count`` training photos (seeded), none a contributor's or a labelled one."""
    known = {k.split("#")[0] for k in (*PEOPLE, *EXTRA_LABELLED)}
    files = sorted(p for p in train.glob("train_*") if p.name not in known)
    pick = np.random.default_rng(seed).permutation(len(files))[:count]
    return [files[i] for i in sorted(pick)]


def measure(path: Path, identities: int) -> list[dict]:
    img = load_rgb(path)
    faces = detect_faces(img, upsample=0).faces
    if not faces:
        return []
    face, rows = faces[0], []
    desc = face_descriptor(img, face)
    look = estimate_look(desc, face.landmarks, skin_tone(img, face.landmarks))
    s = swap.PASS_FACE_SIZE / face_size(np.asarray(face.landmarks))
    if s < 1.0:  # as the swap's drafts see a large face (which decide what is tried further)
        img, face = shrunk(img, face, s)
    plain = swap.SwapParams()
    pushed = dataclasses.replace(plain, geometry=plain.geometry * swap.PUSH_GEOMETRY)
    for name in rank_by_look(look, load_pool(), 0, descriptor_salt(desc))[:identities]:
        own = descriptor_distance(desc, get_identity(name).descriptor)
        d0, d1 = (mask_distance(img, face, desc, name, p) for p in (plain, pushed))
        rows.append({"photo": path.name, "identity": name, "own": round(own, 3), "mask": round(d0, 3),
                     "pushed": round(d1, 3)})
    return rows


def report(rows: list[dict]) -> None:
    print("identity's own distance   Masks   hidden   only with the push")
    for lo, hi in zip(BANDS, BANDS[1:]):
        band = [r for r in rows if lo <= r["own"] < hi]
        if band:
            hidden = sum(max(r["mask"], r["pushed"]) >= 0.6 for r in band)
            push = sum(r["mask"] < 0.6 <= r["pushed"] for r in band)
            print(f"  [{lo:.2f}, {hi:.2f})           {len(band):5d}   {hidden:6d}   {push:6d}")
    drop = np.array([r["mask"] - r["own"] for r in rows])
    print(f"Mask minus own distance: median {np.median(drop):+.3f}, 10-90 % {np.percentile(drop, 10):+.3f} .. "
          f"{np.percentile(drop, 90):+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, default=shared_dir() / "data" / "train_faces")
    ap.add_argument("--photos", type=int, default=70)
    ap.add_argument("--identities", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if any(i.descriptor is None for i in load_pool()):
        raise SystemExit("the pool has no stored descriptors: scripts/build_identities.py --descriptors-only")
    rows = []
    for path in photos(args.train, args.photos, args.seed):
        rows += measure(path, args.identities)
        print(f"{path.name}: {len(rows)} Masks so far", file=sys.stderr)
    report(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
