#!/usr/bin/env python
"""Build imnkit's built-in replacement identity pool (src/imnkit/data/identities/).

The pool must be licence-clean, so it holds only:
  * ``astronaut``: Eileen Collins' NASA portrait (public domain), read from the installed
    scikit-image package (skimage/data/astronaut.png);
  * composites: each the pixel average of >= 12 different people's faces, every one first
    warped (piecewise-affine over its 68 landmarks) onto one common landmark template. A
    composite of many people identifies none of them; the script checks that with dlib's
    descriptor (distance to every contributor >= 0.6, dropping the nearest contributor and
    averaging again if not) and writes every contributor into SOURCES.md.

Contributors are listed by name below (chosen by eye from the near-frontal, neutral, unoccluded,
colour photos of ../shared/data/train_faces whose repositories carry permissive licences:
MIT, Apache-2.0, BSD, Boost). Their photos are read only here and never shipped.

Usage:
    PYTHONPATH=src python scripts/build_identities.py [--train DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from imnkit.face.align import apply_affine, invert_affine, umeyama  # noqa: E402
from imnkit.face.detect import detect_faces, fit_landmarks  # noqa: E402
from imnkit.face.identities import FORMAT_VERSION, MANIFEST  # noqa: E402
from imnkit.face.identity import descriptor_distance, face_descriptor  # noqa: E402
from imnkit.face.warp import delaunay, piecewise_affine  # noqa: E402
from imnkit.imageio import load_image  # noqa: E402

SIZE = 512
MIN_CONTRIBUTORS = 12
PERMISSIVE = ("MIT", "Apache", "BSD", "Boost")

# Photos of women / of men (by eye), one photo per person (dlib descriptor de-duplicated).
GROUP_F = [
    "train_0119.jpg", "train_0105.jpg", "train_0114.jpg", "train_0283.jpg", "train_0280.jpg",
    "train_0286.jpg", "train_0152.jpg", "train_0162.jpg", "train_0282.jpg", "train_0107.jpg",
    "train_0273.jpg", "train_0284.jpg", "train_0083.jpg", "train_0220.png", "train_0288.jpg",
    "train_0171.jpg",
]
GROUP_M = [
    "train_0094.jpg", "train_0269.jpeg", "train_0165.jpeg", "train_0153.jpg", "train_0278.jpg",
    "train_0081.jpg", "train_0092.jpg", "train_0308.png", "train_0277.jpg", "train_0100.jpg",
    "train_0287.jpg", "train_0073.jpg", "train_0078.jpg", "train_0155.jpg", "train_0077.jpg",
    "train_0256.jpg", "train_0192.jpg", "train_0332.jpg", "train_0307.png",
]


def shared_dir() -> Path:
    env = os.environ.get("IMNKIT_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def load_rgb(path: Path) -> np.ndarray:
    return load_image(path, background=(255, 255, 255))  # transparency shown on white, as a viewer does


def largest_landmarks(img: np.ndarray, name: str):
    det = detect_faces(img, faces="largest", verify_below=None)
    if not det.faces:
        raise SystemExit(f"no face found in {name}")
    return det.faces[0]


def procrustes_mean(shapes: list[np.ndarray], iters: int = 5) -> np.ndarray:
    ref = shapes[0].astype(np.float64)
    for _ in range(iters):
        ref = np.mean([apply_affine(umeyama(s, ref), s) for s in shapes], axis=0)
    return ref


def canvas_template(mean_shape: np.ndarray) -> np.ndarray:
    """Place the mean shape in the SIZE x SIZE canvas: landmark box 78% of the side."""
    lo, hi = mean_shape.min(axis=0), mean_shape.max(axis=0)
    s = 0.78 * SIZE / (hi - lo).max()
    return (mean_shape - (lo + hi) / 2) * s + [SIZE / 2, SIZE / 2 + 0.03 * SIZE]


_BORDER = np.array(
    [[0, 0], [SIZE / 2, 0], [SIZE - 1, 0], [SIZE - 1, SIZE / 2], [SIZE - 1, SIZE - 1],
     [SIZE / 2, SIZE - 1], [0, SIZE - 1], [0, SIZE / 2]], dtype=np.float64)


def warp_to(img: np.ndarray, lm: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Piecewise-affine warp of a whole face onto ``target`` landmarks in the canvas."""
    m = umeyama(lm, target)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    src_pts = np.vstack([lm, apply_affine(invert_affine(m), _BORDER)])
    if scale < 0.8:  # pre-shrink so the remap does not alias
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        src_pts = src_pts * scale
    dst_pts = np.vstack([target, _BORDER])
    out, _ = piecewise_affine(img, src_pts, dst_pts, delaunay(dst_pts), (0, 0, SIZE, SIZE),
                              interpolation=cv2.INTER_CUBIC)
    return out


def hull_mask(points: np.ndarray) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points.astype(np.float32)).astype(np.int32), 1)
    return mask.astype(bool)


def to_lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)


def from_lab(lab: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(np.rint(lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def average(labs: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Mean in Lab after giving every face the group's mean colour statistics in the face."""
    mus = np.array([lab[mask].mean(axis=0) for lab in labs])
    sds = np.array([lab[mask].std(axis=0) for lab in labs])
    mu, sd = mus.mean(axis=0), sds.mean(axis=0)
    return np.mean([(lab - m) / s * sd + mu for lab, m, s in zip(labs, mus, sds)], axis=0)


def descriptor_of(img: np.ndarray) -> np.ndarray:
    det = detect_faces(img, faces="largest", verify_below=None, threshold=-0.5)
    if not det.faces:
        raise SystemExit("a built identity is not detected as a face; check the inputs")
    return face_descriptor(img, det.faces[0])


def canvas_landmarks(img: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """68 landmarks as dlib sees them in the built image (what the swap will use)."""
    lo, hi = fallback.min(axis=0), fallback.max(axis=0)
    box = (int(lo[1]), int(lo[0]), int(hi[1]) + 1, int(hi[0]) + 1)
    return fit_landmarks(img, box)


def close_mouth(img: np.ndarray, lm: np.ndarray, donor: np.ndarray, donor_lm: np.ndarray) -> np.ndarray:
    """Replace an open, toothy mouth by the donor's closed one (same canvas frame).

    A replacement face with an open mouth cannot take a closed-mouth expression: its teeth
    get squeezed between the lips. The donor's mouth is placed on the mouth corners of ``img``,
    warped there, colour-matched (Lab mean/spread and low-frequency shading) and feathered in.
    """
    from imnkit.face.swap import _masked_blur

    m = umeyama(donor_lm[[48, 54, 33]], lm[[48, 54, 33]])
    new_lm = lm.copy()
    new_lm[48:68] = apply_affine(m, donor_lm[48:68])
    src_pts = np.vstack([donor_lm, _BORDER])
    dst_pts = np.vstack([new_lm, _BORDER])
    warped, _ = piecewise_affine(donor, src_pts, dst_pts, delaunay(dst_pts), (0, 0, SIZE, SIZE),
                                 interpolation=cv2.INTER_CUBIC)
    size = float(np.ptp(lm[:, 0]))
    region = np.zeros((SIZE, SIZE), np.uint8)
    pts = np.vstack([lm[48:60], new_lm[48:60]])
    c = pts.mean(axis=0)
    cv2.fillConvexPoly(region, cv2.convexHull((c + 1.35 * (pts - c)).astype(np.float32)).astype(np.int32), 1)
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 0.03 * size)
    ring = cv2.dilate(region, np.ones((15, 15), np.uint8)) - region
    a_lab, w_lab = to_lab(img), to_lab(warped)
    sel = region.astype(bool)
    w_lab = (w_lab - w_lab[sel].mean(axis=0)) * np.clip(
        a_lab[sel].std(axis=0) / np.maximum(w_lab[sel].std(axis=0), 1e-3), 0.67, 1.5) + a_lab[sel].mean(axis=0)
    w_lab += _masked_blur(a_lab, ring, 0.08 * size) - _masked_blur(w_lab, ring, 0.08 * size)
    out = img.astype(np.float32) + alpha[..., None] * (from_lab(w_lab).astype(np.float32) - img.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, default=shared_dir() / "data" / "train_faces")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "imnkit" / "data" / "identities")
    ap.add_argument("--exaggerate-f", type=float, default=0.8,
                    help="push the women's composite this far further from the mixed one (Lab)")
    ap.add_argument("--exaggerate-m", type=float, default=1.3,
                    help="push the men's composite this far further from the mixed one (Lab)")
    args = ap.parse_args()

    rows = {r["file"]: r for r in csv.DictReader(open(args.train / "SOURCES.tsv"), delimiter="\t")}
    people = GROUP_F + GROUP_M
    for f in people:
        lic = rows[f]["licence_of_repo"]
        if not any(p in lic for p in PERMISSIVE):
            raise SystemExit(f"{f}: licence {lic!r} is not permissive")

    print(f"aligning {len(people)} contributor photos ...", file=sys.stderr)
    faces = {}
    for f in people:
        img = load_rgb(args.train / f)
        face = largest_landmarks(img, f)
        faces[f] = (img, face.landmarks.astype(np.float64), face_descriptor(img, face))
    template = canvas_template(procrustes_mean([faces[f][1] for f in people]))
    mask = hull_mask(template)
    labs = {f: to_lab(warp_to(faces[f][0], faces[f][1], template)) for f in people}

    kf, km = args.exaggerate_f, args.exaggerate_m

    def build(group_f: list[str], group_m: list[str]) -> dict[str, tuple[np.ndarray, list[str]]]:
        mix = group_f + group_m
        lab_x = average([labs[f] for f in mix], mask)
        lab_f = average([labs[f] for f in group_f], mask)
        lab_m = average([labs[f] for f in group_m], mask)
        return {
            "composite_f": (from_lab(lab_x + (1 + kf) * (lab_f - lab_x)), mix),
            "composite_m": (from_lab(lab_x + (1 + km) * (lab_m - lab_x)), mix),
            "composite_mix": (from_lab(lab_x), mix),
        }

    # Drop the contributor nearest to a composite until no composite matches anyone (< 0.6).
    group_f, group_m = list(GROUP_F), list(GROUP_M)
    while True:
        built = build(group_f, group_m)
        worst = (9.0, "", "")
        for name, (img, members) in built.items():
            d = descriptor_of(img)
            for f in members:
                dist = descriptor_distance(d, faces[f][2])
                if dist < worst[0]:
                    worst = (dist, f, name)
        dist, f, name = worst
        if dist >= 0.6:
            break
        group = group_f if f in group_f else group_m
        if len(group) <= MIN_CONTRIBUTORS:
            raise SystemExit(f"{name} is {dist:.3f} from {f} and no contributor can be dropped")
        print(f"  {f} is {dist:.3f} from {name}: dropped", file=sys.stderr)
        group.remove(f)

    skimage_dir = Path(__import__("skimage").__file__).parent
    astro_img = load_rgb(skimage_dir / "data" / "astronaut.png")
    astro_face = largest_landmarks(astro_img, "astronaut.png")
    m = umeyama(astro_face.landmarks, template).astype(np.float32)
    astro = cv2.warpAffine(astro_img, m, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    astro_lm = apply_affine(m, astro_face.landmarks)
    donor = built["composite_mix"][0]
    astro = close_mouth(astro, astro_lm, donor, canvas_landmarks(donor, template))

    args.out.mkdir(parents=True, exist_ok=True)
    entries = []
    descs = {}
    all_members: set[str] = set()
    order = [("astronaut", astro, astro_lm), *[(n, im, template) for n, (im, _) in built.items()]]
    for name, img, lm_guess in order:
        lm = canvas_landmarks(img, lm_guess)
        descs[name] = descriptor_of(img)
        Image.fromarray(img).save(args.out / f"{name}.png", optimize=True)
        if name == "astronaut":
            origin = ("Eileen Collins, NASA portrait (public domain), from scikit-image "
                      "skimage/data/astronaut.png, similarity-aligned and cropped; her open smile "
                      "replaced by composite_mix's closed mouth so that it fits closed-mouth faces")
            licence = "public domain (mouth region: synthesised composite, see below)"
            n_members = 1
        else:
            members = built[name][1]
            all_members.update(members)
            n_members = len(members)
            what = {
                "composite_mix": f"the average of all {n_members} contributors' aligned faces",
                "composite_f": f"the average of the {len(group_f)} women's aligned faces, pushed "
                               f"{kf:g}x further from the {n_members}-person average",
                "composite_m": f"the average of the {len(group_m)} men's aligned faces, pushed "
                               f"{km:g}x further from the {n_members}-person average",
            }[name]
            origin = (f"synthesised composite: {what} (contributors in SOURCES.md); "
                      f"built by scripts/build_identities.py")
            licence = "synthesised composite; contributors from MIT/Apache-2.0 licensed repositories"
        entries.append({
            "name": name,
            "file": f"{name}.png",
            "sha256": hashlib.sha256((args.out / f"{name}.png").read_bytes()).hexdigest(),
            "landmarks": np.round(lm, 2).tolist(),
            "origin": origin,
            "licence": licence,
            "contributors": n_members,
        })
    meta = {"format": FORMAT_VERSION, "size": SIZE, "identities": entries}
    (args.out / MANIFEST).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    names = [e["name"] for e in entries]
    lines = ["pairwise dlib descriptor distances (>= 0.6: different people):"]
    for a in names:
        lines.append(f"  {a:14s} " + " ".join(f"{descriptor_distance(descs[a], descs[b]):5.2f}" for b in names))
    nearest = []
    for n in names[1:]:
        members = built[n][1]
        d = {f: descriptor_distance(descs[n], faces[f][2]) for f in members}
        f = min(d, key=d.get)
        nearest.append(f"  {n}: nearest contributor {f} at {d[f]:.3f}")
    report = "\n".join(lines + ["distance from each composite to its nearest contributor:"] + nearest)
    print(report)
    write_sources(args.out, entries, built, rows, report)


def write_sources(out: Path, entries, built, rows, report: str) -> None:
    md = [
        "# Built-in replacement identities",
        "",
        "Built by `scripts/build_identities.py`; rebuild with",
        "`PYTHONPATH=src python scripts/build_identities.py` (needs ../shared/data/train_faces).",
        "Each identity is a 512x512 RGB PNG aligned to one landmark template, with its 68 dlib",
        "landmarks in `identities.json`.",
        "",
        "| identity | origin | licence |",
        "|---|---|---|",
    ]
    for e in entries:
        md.append(f"| {e['name']} | {e['origin']} | {e['licence']} |")
    md += [
        "",
        "## How the composites are made",
        "",
        "Every contributor photo is aligned by its 68 dlib landmarks and warped piecewise-affinely",
        "onto the Procrustes mean of all contributors' landmarks, its face colour statistics (Lab)",
        "are set to the group mean, and the pixels are averaged. `composite_mix` averages all",
        "contributors; `composite_f` / `composite_m` average the photos of women / of men and are",
        "then pushed away from `composite_mix` (`--exaggerate-f/-m`, Lab), so the three differ from each",
        "other. A composite is accepted only when dlib's descriptor puts it at >= 0.6 from every",
        "contributor (otherwise the nearest contributor is dropped and the rest averaged again), so",
        "no contributor is identifiable in it. No contributor photo is shipped.",
        "",
        "```",
        report,
        "```",
        "",
        "## Contributors",
        "",
        "Files of `shared/data/train_faces/` (see its SOURCES.tsv); all from repositories under a",
        "permissive licence. The photos themselves are public-figure / celebrity photos whose",
        "copyright stays with their authors; only the many-person average is shipped.",
        "",
        "| file | repository | path in repository | commit | repository licence | in |",
        "|---|---|---|---|---|---|",
    ]
    users: dict[str, list[str]] = {}
    for n, (_, members) in built.items():
        for f in members:
            users.setdefault(f, []).append(n)
    for f in sorted(users):
        r = rows[f]
        md.append(f"| {f} | {r['repo']} | {r['path_in_repo']} | {r['commit'][:12]} | "
                  f"{r['licence_of_repo']} | {', '.join(users[f])} |")
    (out / "SOURCES.md").write_text("\n".join(md) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
