#!/usr/bin/env python
"""How natural is the offline (classical) Mask: expression kept, identity hidden, Masks varied.

For every photo of ``--faces DIR`` matching ``--glob`` (default: the portraits) it detects the
faces, makes the Mask with the default classical swap (seed 0) and re-fits the 68 landmarks on
the Mask inside each face's box, then reports:

* expression errors: mean absolute difference protected vs Mask of the three measures of
  :mod:`imnkit.face.expression` (mouth opening, smile width, eye opening);
* identity hidden: % of faces whose Mask is >= 0.6 from the protected face by dlib's
  descriptor (re-measured here, not the swap's own figure);
* distinct Masks: the largest set of photos whose Masks are pairwise >= 0.5 apart by dlib
  (greedy), as a % of the photos (one face per photo: the largest);
* identities used and the pool size; seconds per photo for the swap;
* look agreement: over the faces hand-labelled in ``benchmarks/data/looks.tsv`` (apparent gender
  presentation f/m, age band child/young/adult/senior; each detected face matched to the labelled
  box around its centre), % whose Mask's identity has the same gender presentation, % with the
  same age band or the next one, % with the same band, and how many children got an older person's
  identity or older people a child's (targets, issue 27: >= 95 % and >= 90 %, no child/grown-up swaps).

``--sheet PATH`` writes a contact sheet (protected | Mask, one row per face, the identity's name
written under it) for looking at. It holds faces from DIR: keep it out of the repository.

Usage:
    PYTHONPATH=src python benchmarks/naturalness.py --faces ../shared/data/faces [--sheet /tmp/sheet.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.face.detect import detect_faces, fit_landmarks, make_face, predictor_box  # noqa: E402
from imnkit.face.expression import measure  # noqa: E402
from imnkit.face.identities import AGES, identity_names, load_pool  # noqa: E402
from imnkit.face.descriptors import descriptor_distance, face_descriptor  # noqa: E402
from imnkit.face.swap import swap_faces  # noqa: E402
from imnkit.stage import get_stage  # noqa: E402

ALIGN_UPSAMPLE = get_stage("align").resolve_params({})["upsample"]
from imnkit.imageio import load_image  # noqa: E402

LOOKS_TSV = Path(__file__).resolve().parent / "data" / "looks.tsv"
HIDDEN = 0.6
DISTINCT = 0.5
THUMB = 160


def _crop(img: np.ndarray, box, size: int = THUMB) -> np.ndarray:
    """A square crop around a face box (box side + 30 %), resized to ``size``."""
    y0, x0, y1, x1 = box
    s = int(max(y1 - y0, x1 - x0) * 1.3)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    pad = np.pad(img, ((s, s), (s, s), (0, 0)), mode="edge")
    c = pad[cy + s - s // 2: cy + s + s // 2, cx + s - s // 2: cx + s + s // 2]
    return cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    bar = np.zeros((18, tile.shape[1], 3), np.uint8)
    cv2.putText(bar, text[:28], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([tile, bar])


def read_looks(path: Path) -> dict[str, list[tuple[tuple[int, int, int, int], str, str]]]:
    """Hand labels by photo: [(box y0 x0 y1 x1, gender, age band)]; '?' labels are left out."""
    out: dict[str, list] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#") or line.startswith("photo\t"):
            continue
        photo, box, gender, age = line.split("\t")[:4]
        if gender in ("f", "m") and age in AGES:
            out.setdefault(photo, []).append((tuple(int(v) for v in box.split()), gender, age))
    return out


def label_of(labels: list, box) -> tuple[str, str] | None:
    """The label whose box holds the centre of ``box`` (y0, x0, y1, x1), nearest centre first."""
    cy, cx = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = [(abs((b[0] + b[2]) / 2 - cy) + abs((b[1] + b[3]) / 2 - cx), g, a)
              for b, g, a in labels if b[0] <= cy < b[2] and b[1] <= cx < b[3]]
    return min(inside)[1:] if inside else None


def look_agreement(pairs: list[tuple[tuple[str, str], tuple[str, str]]]) -> dict:
    """Figures over (person's label, identity's look) pairs, each (gender, age band)."""
    n = len(pairs)

    def pct(k: int) -> float:
        return round(100.0 * k / max(n, 1), 1)

    band = [(AGES.index(p[1]), AGES.index(i[1])) for p, i in pairs]
    return {
        "labelled_faces": n,
        "same_gender_pct": pct(sum(p[0] == i[0] for p, i in pairs)),
        "age_band_or_next_pct": pct(sum(abs(a - b) <= 1 for a, b in band)),
        "same_age_band_pct": pct(sum(a == b for a, b in band)),
        # a child's face given any older identity (a young adult's included), and the reverse
        "child_given_older": sum(a == 0 and b > 0 for a, b in band),
        "older_given_child": sum(a > 0 and b == 0 for a, b in band),
    }


def _greedy_distinct(descs: list[np.ndarray]) -> int:
    """Size of a greedy set of descriptors pairwise >= DISTINCT apart."""
    kept: list[np.ndarray] = []
    for d in descs:
        if all(descriptor_distance(d, k) >= DISTINCT for k in kept):
            kept.append(d)
    return len(kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, required=True, help="folder of photos")
    ap.add_argument("--glob", default="portrait_*", help="which photos of the folder (default portrait_*)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", type=Path, help="write the contact sheet here (PNG/JPEG)")
    ap.add_argument("--json", type=Path, help="write the per-face figures here")
    ap.add_argument("--looks", type=Path, default=LOOKS_TSV, help="hand labels of the faces' looks")
    args = ap.parse_args()
    labels = read_looks(args.looks) if args.looks.is_file() else {}
    pool_look = {i.name: (i.gender, i.age) for i in load_pool()}

    photos = sorted(p for p in args.faces.glob(args.glob) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not photos:
        raise SystemExit(f"no photos matching {args.glob} in {args.faces}")
    rows, tiles, mask_descs, used = [], [], [], []
    secs = []
    for path in photos:
        img = load_image(path, background=(255, 255, 255))
        faces = detect_faces(img, upsample=ALIGN_UPSAMPLE).faces  # as the default recipe's align stage
        if not faces:
            print(f"{path.name}: no face found", file=sys.stderr)
            continue
        t = time.perf_counter()
        res = swap_faces(img, faces, seed=args.seed)
        secs.append(time.perf_counter() - t)
        for k, (face, name) in enumerate(zip(faces, res.identities)):
            again = make_face(fit_landmarks(res.image, predictor_box(face)), face.box)
            dist = descriptor_distance(face_descriptor(img, face), face_descriptor(res.image, again))
            e_p, e_m = measure(face.landmarks), measure(again.landmarks)
            row = {
                "photo": path.name, "face": k, "identity": name, "distance": round(dist, 4),
                "mouth_open": [round(e_p.mouth_open, 4), round(e_m.mouth_open, 4)],
                "smile_width": [round(e_p.smile_width, 4), round(e_m.smile_width, 4)],
                "eye_open": [round(e_p.eye_open, 4), round(e_m.eye_open, 4)],
            }
            label = label_of(labels.get(path.name, []), face.box)
            if label is not None and pool_look.get(name, ("", ""))[1] in AGES:
                row["look"], row["identity_look"] = list(label), list(pool_look[name])
            rows.append(row)
            used.append(name)
            if k == 0:
                mask_descs.append(face_descriptor(res.image, again))
            if args.sheet:
                tiles.append(np.hstack([_label(_crop(img, face.box), f"{path.stem[:20]}"),
                                        _label(_crop(res.image, face.box), f"{name} {dist:.2f}")]))

    def err(key: str) -> float:
        return float(np.mean([abs(r[key][0] - r[key][1]) for r in rows]))

    n = len(rows)
    summary = {
        "photos": len(photos),
        "faces": n,
        "mouth_open_error": round(err("mouth_open"), 4),
        "smile_width_error": round(err("smile_width"), 4),
        "eye_open_error": round(err("eye_open"), 4),
        "identity_hidden_pct": round(100.0 * sum(r["distance"] >= HIDDEN for r in rows) / max(n, 1), 1),
        "distinct_masks_pct": round(100.0 * _greedy_distinct(mask_descs) / max(len(mask_descs), 1), 1),
        "identities_used": len(set(used)),
        "pool_size": len(identity_names()),
        "swap_seconds_mean": round(float(np.mean(secs)), 2) if secs else None,
        "look": look_agreement([(tuple(r["look"]), tuple(r["identity_look"])) for r in rows if "look" in r]),
    }
    for r in rows:
        print(f"{r['photo']:28s} {r['face']} {r['identity']:18s} d={r['distance']:.2f}  "
              f"mouth {r['mouth_open'][0]:.3f}->{r['mouth_open'][1]:.3f}  "
              f"smile {r['smile_width'][0]:.3f}->{r['smile_width'][1]:.3f}  "
              f"eye {r['eye_open'][0]:.3f}->{r['eye_open'][1]:.3f}"
              + (f"  look {'/'.join(r['look'])} -> {'/'.join(r['identity_look'])}" if "look" in r else ""))
    print(json.dumps(summary, indent=1))
    if args.sheet and tiles:
        cols = 3
        blank = np.zeros_like(tiles[0])
        lines = [np.hstack(tiles[i:i + cols] + [blank] * (cols - len(tiles[i:i + cols])))
                 for i in range(0, len(tiles), cols)]
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), cv2.cvtColor(np.vstack(lines), cv2.COLOR_RGB2BGR))
        print(f"contact sheet: {args.sheet}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "faces": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
