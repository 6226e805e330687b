#!/usr/bin/env python
"""Add a darker-skinned adult woman to the built-in identity pool, the one look that had none.

``build_identities.py --try-dark-adult-women`` makes composites from the texture of 3-5
darker-skinned CC0 women on the shape of 2-3 adult women. On their own, those far enough from the
pool needed their shape pushed 1.6-2x, and their averaged eyes looked made up. This script makes
the same seeded candidates and gives each one the eyes of each darker-skinned woman allowed as an
eye donor (``identity_eyes.py``: one person's eye region, in the composite's colour).

A candidate is kept when dlib puts it >= 0.6 from every contributor, from the donor and from every
identity of the pool, and its cheeks read under ITA 28. Of those, the least exaggerated shape
comes first, then the one farthest from the pool. It is added as ``woman_adult_<n>``; ``--dry-run``
writes nothing, and ``--strip`` saves the kept candidates side by side.

Usage (after ``identity_eyes.py``; DIR: the CC0 folder named in build_identities.py):
    PYTHONPATH=src python scripts/dark_adult_woman.py --cc0 DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_identities as bi  # noqa: E402
import identity_eyes as ie  # noqa: E402

from imnkit.face.descriptors import descriptor_distance  # noqa: E402
from imnkit.face.identities import MANIFEST, skin_tone  # noqa: E402


def passing(cands: list[dict], donors: list[ie.Donor], pool: list[np.ndarray]) -> list[dict]:
    """Every (candidate, donor) pair that passes the distance and tone checks, as dicts."""
    kept = []
    for c in cands:
        for d in donors:
            img, dlm, ddesc = d.load()
            after = ie.with_eyes(c["rgb"], c["lm"], img, dlm)
            seen = bi.detect_built(after, c["lm"])
            if seen is None:
                continue
            lm, desc = seen
            near = ie.margin(desc, [p.desc for p in c["members"]] + [ddesc])
            gap = ie.margin(desc, pool)
            tone = skin_tone(bi.flatten_background(after, lm), lm)
            if near >= 0.6 and gap >= 0.6 and tone < bi.DARK_ITA:
                kept.append({**c, "rgb": after, "lm": lm, "desc": desc, "near": near, "gap": gap, "tone": tone,
                             "donor": d, "from_donor": descriptor_distance(desc, ddesc)})
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, default=bi.shared_dir() / "data" / "train_faces")
    ap.add_argument("--cc0", type=Path, required=True, help=f"folder of {bi.CC0_REPO}'s '{bi.CC0_FOLDER}' images")
    ap.add_argument("--out", type=Path, default=bi.REPO / "src" / "imnkit" / "data" / "identities")
    ap.add_argument("--candidates", type=int, default=60)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--strip", type=Path, help="save the kept candidates side by side here")
    ap.add_argument("--dry-run", action="store_true", help="write nothing into the pool")
    args = ap.parse_args()

    contrib = bi.Contributors(args.train)
    contrib.add_cc0(args.cc0)
    meta = json.loads((args.out / MANIFEST).read_text(encoding="utf-8"))
    pool = [bi.detect_built(bi.load_rgb(args.out / e["file"]), np.asarray(e["landmarks"]))[1] for e in meta["identities"]]
    cands = bi.score_candidates(bi.dark_adult_women_candidates(contrib, args.candidates, np.random.default_rng(args.seed)),
                                contrib.template)
    donors = [d for d in ie.donors(args.train, args.cc0) if d.dark and d.look[0] == "f" and d.key in ie.ALLOW]
    kept = sorted(passing(cands, donors, pool), key=lambda k: (k["ex"], -k["gap"]))
    print(f"{len(cands)} candidates >= 0.6 from their contributors; {len(kept)} (candidate, donor) pairs pass", file=sys.stderr)
    for k in kept[:10]:
        print(f"  {k['how']} + eyes of {k['donor'].key}: {k['near']:.3f} from its nearest contributor or donor, "
              f"{k['gap']:.3f} from the pool, ITA {k['tone']:.1f}", file=sys.stderr)
    if args.strip and kept:
        Image.fromarray(np.hstack([k["rgb"] for k in kept[:8]])).save(args.strip)
    if kept and not args.dry_run:
        add(args, meta, kept[0])


def add(args, meta: dict, k: dict) -> None:
    """``k`` into the pool as the next woman_adult_<n>; manifest last, SOURCES.md rewritten."""
    n = sum(e["name"].startswith("woman_adult_") for e in meta["identities"]) + 1
    name = f"woman_adult_{n}"
    img = bi.flatten_background(k["rgb"], k["lm"])
    path = args.out / f"{name}.png"
    Image.fromarray(img).save(path, optimize=True)
    members = [p.key for p in k["members"]] + [k["donor"].key]
    meta["identities"].append({
        "name": name, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "landmarks": np.round(k["lm"], 2).tolist(), "descriptor": bi.stored_descriptor(img, np.round(k["lm"], 2)),
        "gender": "f", "age": "adult", "tone": round(skin_tone(img, k["lm"]), 1),
        "origin": (f"synthesised composite: the {k['how']} (the texture moved by the adult-women minus young-women "
                   "prototype difference), with the eye region of one person, warped onto it (contributors and eye "
                   "donor in SOURCES.md); built by scripts/dark_adult_woman.py"),
        "licence": ("synthesised composite; contributors from a CC0 repository and MIT/Apache-2.0/BSD/Boost licensed "
                    "repositories"),
        "contributors": members, "eyes": k["donor"].key,
    })
    ie.save_manifest(args.out, meta)
    report = ie.reports_so_far(args.out)
    report += (f"\n\n## Darker-skinned adult woman\n  {name:16s} eyes of {k['donor'].key:16s} {k['from_donor']:.3f} from it, "
               f"{k['near']:.3f} from its nearest contributor or donor, {k['gap']:.3f} from the pool, ITA {k['tone']:.1f}")
    bi.write_sources(args.out, meta["identities"], ie.licence_rows(args.train), report)
    print(f"added {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
