#!/usr/bin/env python
"""Build imnkit's built-in replacement identity pool (src/imnkit/data/identities/).

The pool must be licence-clean, so it holds only composites and one public-domain portrait
(``astronaut``: Eileen Collins' NASA portrait, read from the installed scikit-image package,
kept when dlib puts it >= 0.6 from every composite). Each composite is the average texture of
6-9 people of one look (gender presentation, age band) -- every face warped piecewise-affinely
over its 68 landmarks onto one closed-mouth template, colour statistics equalised, lightness
pushed away from the all-contributor average -- warped onto the mean shape of 2-4 people of that
look pushed further away (so it has a face of its own, not the average face), with clean closed
lips. Looks the photos lack come from Rowland & Perrett's prototype transform: children from
young adults plus the all-children minus young-adult difference, older women from adult women
plus the men's senior minus adult difference.

Many candidates are made from seeded random groups; the pool keeps those that dlib's descriptor
puts >= 0.6 from each of their contributors (no contributor is recognisable) and >= 0.6 from
every identity already kept, taking the looks in turn (least exaggerated first) so each look is
covered.

Contributors are listed by file below with their look (by eye), all near-frontal, unoccluded
photos of ../shared/data/train_faces from repositories under a permissive licence (MIT,
Apache-2.0, BSD, Boost; checked against its SOURCES.tsv). Their photos are read only here and
never shipped. The script also writes the look model (``looks.json``) that the swap uses to pick
an identity of the protected face's look: a ridge regression from the look descriptors (a face's
and its mirror image's dlib descriptor, averaged) of all the listed photos, the more faces of
``look_labels.tsv`` and the CC0 people (with ``--cc0``) -- each also shrunk to a 32 and a 64 px
wide face and turned grey -- to their labels (``--looks-only`` rewrites just that file).

Usage:
    PYTHONPATH=src nice python scripts/build_identities.py --candidates 40 --seed 3 --top-up 4 --count 23   # the shipped pool
    PYTHONPATH=src python scripts/build_identities.py --looks-only --cc0 DIR         # only looks.json (DIR: below)
    PYTHONPATH=src python scripts/build_identities.py --descriptors-only             # only the descriptors
    PYTHONPATH=src nice python scripts/build_identities.py --extend --cc0 DIR --candidates N --seed S --count 41
        # then, with (N, S) = (30, 5), (24, 6), (24, 7) in turn: add darker-skinned and missing-look
        # composites to the shipped pool (the identities already there are kept as they are); DIR:
        # the '1000 x 1000' folder of cjdowner/interfaces (CC0) at CC0_COMMIT, e.g.
        # git --git-dir=.../interfaces.git archive CC0_COMMIT "1000 x 1000" | tar -x --strip-components=1 -C DIR

Darker-skinned identities (``--extend``): the permissive photo set has no darker-skinned women or
children, so every look also gets composites whose texture and shape come only from darker-skinned
people (by eye) of that gender from the CC0 avatar set ``cjdowner/interfaces`` (100 stock portraits
the repository releases under CC0 1.0), in the skin colour statistics of the darkest-skinned of
them, moved to the look's age by the same prototype differences (children: all-children minus young
adults, up to 1.4x; adults and seniors: that look's prototype minus young adults; older women: adult
women plus the men's senior-minus-adult difference), the eyes left out of the age difference (the
prototypes' light irises turned dark eyes pale). Children's composites leave out men with a beard or
stubble (a shadow of it stayed on the child); too few darker-skinned men are clean-shaven, so the
darker-skinned boys' texture also takes the women's. The CC0 people also join the other composites
of their look. A composite counts as darker-skinned when its cheeks' ITA is under 28 degrees.
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
from imnkit.face.detect import detect_faces, fit_landmarks, make_face, predictor_box  # noqa: E402
from imnkit.face.expression import measure  # noqa: E402
from imnkit.face.identities import AGES as LOOKS_AGES, FORMAT_VERSION, LOOKS, MANIFEST, skin_tone  # noqa: E402
from imnkit.face.descriptors import descriptor_distance, face_descriptor, pool_face_descriptor  # noqa: E402
from imnkit.face.looks import context_features, geometry_features, look_descriptor, look_features  # noqa: E402
from imnkit.face.warp import delaunay, piecewise_affine  # noqa: E402
from imnkit.imageio import load_image  # noqa: E402

SIZE = 384
PERMISSIVE = ("MIT", "Apache", "BSD", "Boost")

# file[#face index] -> (gender presentation, age band), by eye. One photo per person.
PEOPLE = {
    # children
    "train_0047.png": ("f", "child"), "train_0048.png": ("f", "child"), "train_0050.png": ("f", "child"),
    "train_0051.jpg#1": ("f", "child"), "train_0259.jpg": ("f", "child"),
    "train_0049.png": ("m", "child"), "train_0054.png": ("m", "child"), "train_0065.png": ("m", "child"),
    # young women
    "train_0051.jpg#0": ("f", "young"), "train_0052.png": ("f", "young"), "train_0053.png": ("f", "young"),
    "train_0104.jpg": ("f", "young"), "train_0107.jpg": ("f", "young"), "train_0162.jpg": ("f", "young"),
    "train_0220.png": ("f", "young"), "train_0222.jpg": ("f", "young"), "train_0255.jpg": ("f", "young"),
    "train_0270.jpeg": ("f", "young"), "train_0280.jpg": ("f", "young"), "train_0282.jpg": ("f", "young"),
    "train_0283.jpg": ("f", "young"), "train_0303.jpg": ("f", "young"), "train_0316.jpg": ("f", "young"),
    # adult women
    "train_0056.png": ("f", "adult"), "train_0070.jpg": ("f", "adult"), "train_0072.jpg": ("f", "adult"),
    "train_0082.jpg": ("f", "adult"), "train_0152.jpg": ("f", "adult"), "train_0273.jpg": ("f", "adult"),
    "train_0286.jpg": ("f", "adult"), "train_0288.jpg": ("f", "adult"),
    # senior women
    "train_0223.jpg#1": ("f", "senior"),
    # young men
    "train_0063.png": ("m", "young"), "train_0067.png": ("m", "young"), "train_0073.jpg": ("m", "young"),
    "train_0156.jpg": ("m", "young"), "train_0260.jpg": ("m", "young"),
    "train_0261.jpg": ("m", "young"), "train_0287.jpg": ("m", "young"), "train_0307.png": ("m", "young"),
    # adult men
    "train_0055.png": ("m", "adult"), "train_0060.png": ("m", "adult"), "train_0076.jpg": ("m", "adult"),
    "train_0078.jpg": ("m", "adult"), "train_0081.jpg": ("m", "adult"),
    "train_0088.jpg": ("m", "adult"), "train_0093.jpg": ("m", "adult"), "train_0153.jpg": ("m", "adult"),
    "train_0154.png": ("m", "adult"), "train_0157.jpg": ("m", "adult"), "train_0164.png": ("m", "adult"),
    "train_0191.jpg#0": ("m", "adult"), "train_0192.jpg": ("m", "adult"),
    "train_0193.jpg#0": ("m", "adult"), "train_0193.jpg#1": ("m", "adult"), "train_0193.jpg#4": ("m", "adult"),
    "train_0268.jpg": ("m", "adult"), "train_0269.jpeg": ("m", "adult"), "train_0271.jpg": ("m", "adult"),
    "train_0276.jpg": ("m", "adult"), "train_0277.jpg": ("m", "adult"), "train_0281.jpg": ("m", "adult"),
    "train_0332.jpg": ("m", "adult"),
    # senior men
    "train_0058.png": ("m", "senior"), "train_0062.jpg#0": ("m", "senior"),
    "train_0097.jpg": ("m", "senior"), "train_0193.jpg#2": ("m", "senior"), "train_0223.jpg#0": ("m", "senior"),
    "train_0278.jpg": ("m", "senior"), "train_0308.png": ("m", "senior"),
   
}
# Extra photos of the same people (other shots) that only train the look classifier.
EXTRA_LABELLED = {
    "train_0068.jpg": ("f", "adult"), "train_0069.jpg": ("f", "adult"), "train_0089.jpg": ("f", "adult"),
    "train_0105.jpg": ("f", "young"), "train_0108.jpg": ("f", "young"), "train_0163.jpg": ("f", "young"),
    "train_0314.jpg": ("f", "young"), "train_0317.jpg": ("f", "young"), "train_0083.jpg": ("f", "adult"),
    "train_0074.jpg": ("m", "young"), "train_0077.jpg": ("m", "adult"), "train_0079.jpg": ("m", "adult"),
    "train_0090.jpg": ("m", "adult"), "train_0094.jpg": ("m", "adult"), "train_0098.jpg": ("m", "senior"),
    "train_0100.jpg#0": ("m", "senior"), "train_0159.jpeg": ("m", "young"), "train_0161.jpg": ("m", "adult"),
    "train_0256.jpg": ("m", "senior"), "train_0272.jpg": ("m", "adult"), "train_0302.jpeg": ("m", "adult"),
    "train_0155.jpg": ("m", "adult"),
}

#: CC0 1.0 avatar portraits (README "License": all avatars CC0) read for ``--extend``
CC0_REPO = "cjdowner/interfaces"
CC0_COMMIT = "2166b2273fd050699e112e95a251f0519cce58c3"
CC0_FOLDER = "1000 x 1000"
CC0_LICENCE = "CC0 1.0 (repository README: all avatars CC0)"
# file -> (gender presentation, age band, darker-skinned), by eye; near-frontal, no glasses or
# sunglasses, one per person.
CC0_PEOPLE = {
    "025.jpg": ("f", "young", True), "057.jpg": ("f", "young", True), "078.jpg": ("f", "young", True),
    "080.jpg": ("f", "young", True), "093.jpg": ("f", "young", True), "098.jpg": ("f", "adult", True),
    "041.jpg": ("f", "young", True), "052.jpg": ("f", "young", True), "058.jpg": ("f", "young", True),
    "088.jpg": ("f", "young", True), "096.jpg": ("f", "young", True),
    "006.jpg": ("m", "young", True), "051.jpg": ("m", "young", True), "066.jpg": ("m", "young", True),
    "071.jpg": ("m", "young", True), "073.jpg": ("m", "young", True), "079.jpg": ("m", "young", True),
    "084.jpg": ("m", "young", True), "086.jpg": ("m", "young", True), "090.jpg": ("m", "young", True),
    "061.jpg": ("m", "adult", True), "014.jpg": ("m", "adult", True), "095.jpg": ("m", "adult", True),
    "022.jpg": ("m", "young", True), "033.jpg": ("m", "young", True),
    "072.jpg": ("m", "young", False), "074.jpg": ("m", "young", False), "087.jpg": ("m", "young", False),
    "097.jpg": ("m", "young", False), "100.jpg": ("m", "young", False), "028.jpg": ("m", "senior", False),
}
#: the darkest-skinned of them, by eye: the darker-skinned composites take these people's skin colour
#: statistics (their features come from all the darker-skinned people of CC0_PEOPLE)
CC0_DARKEST = {"025.jpg", "057.jpg", "058.jpg", "078.jpg", "080.jpg", "093.jpg", "098.jpg", "006.jpg", "051.jpg",
               "066.jpg", "071.jpg", "073.jpg", "079.jpg", "084.jpg", "086.jpg", "090.jpg", "061.jpg", "095.jpg"}
#: CC0 men with a beard, moustache or stubble, by eye: left out of children's composites (a child's
#: face made from theirs keeps a shadow of it)
CC0_BEARDED = {"006.jpg", "066.jpg", "071.jpg", "079.jpg", "084.jpg", "086.jpg", "090.jpg", "061.jpg", "014.jpg",
               "095.jpg", "022.jpg", "033.jpg", "087.jpg", "097.jpg"}
#: a composite with cheeks under this ITA (degrees) counts as darker-skinned
DARK_ITA = 28.0


def shared_dir() -> Path:
    env = os.environ.get("IMNKIT_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def load_rgb(path: Path) -> np.ndarray:
    return load_image(path, background=(255, 255, 255))  # transparency shown on white, as a viewer does


def face_of(train: Path, key: str):
    """(image, face) of ``file[#k]``: the k-th face dlib finds (largest first)."""
    file, _, k = key.partition("#")
    img = load_rgb(train / file)
    faces = detect_faces(img, faces="all", verify_below=None).faces
    k = int(k or 0)
    if len(faces) <= k:
        raise SystemExit(f"face {k} not found in {file}")
    return img, faces[k]


def procrustes_mean(shapes: list[np.ndarray], iters: int = 5) -> np.ndarray:
    ref = shapes[0].astype(np.float64)
    for _ in range(iters):
        ref = np.mean([apply_affine(umeyama(s, ref), s) for s in shapes], axis=0)
    return ref


def close_lips(lm: np.ndarray) -> np.ndarray:
    """The inner lips met at their midline (a closed mouth of the same shape)."""
    out = lm.copy()
    for a, b in ((61, 67), (62, 66), (63, 65)):
        out[a] = out[b] = (lm[a] + lm[b]) / 2
    return out


def canvas(mean_shape: np.ndarray) -> np.ndarray:
    """Place a shape in the SIZE x SIZE canvas: landmark box 78 % of the side."""
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


class Person:
    """One contributor: texture on the template, own shape on the canvas, descriptor, look."""

    def __init__(self, key, img, face, template, look, dark=False, beard=False):
        self.key, self.look, self.dark, self.beard = key, look, dark, beard
        lm = face.landmarks.astype(np.float64)
        self.desc = face_descriptor(img, face)
        self.closed = measure(lm).mouth_open < 0.06
        self.shape = apply_affine(umeyama(lm, template), lm)
        self.lab = to_lab(warp_to(img, lm, template))


def average(people: list[Person], face: np.ndarray, mouth_w: np.ndarray) -> np.ndarray:
    """Mean Lab texture on the template; every face first given the group's colour statistics.

    Grey photos keep the group's mean colour. Around the mouth, closed mouths weigh 20x more
    than open ones (a Mask needs closed lips: the swap draws the protected face's own inside).
    """
    mus = np.array([p.lab[face].mean(axis=0) for p in people])
    sds = np.array([p.lab[face].std(axis=0) for p in people])
    colour = sds[:, 1:].min(axis=1) >= 1.0
    mu = mus.mean(axis=0)
    sd = np.where(colour[:, None], sds, sds[:, :1]).mean(axis=0) if colour.any() else sds.mean(axis=0)
    acc = np.zeros((SIZE, SIZE, 3), np.float64)
    wsum = np.zeros((SIZE, SIZE, 1), np.float64)
    for p, m, s, c in zip(people, mus, sds, colour):
        z = (p.lab - m) / np.maximum(s, 1e-3)
        if not c:
            z[..., 1:] = 0.0
        w = (1.0 + (19.0 if p.closed else 0.0) * mouth_w)[..., None]
        acc += w * (z * sd + mu)
        wsum += w
    return (acc / wsum).astype(np.float32)


def render(lab: np.ndarray, template: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """The template texture warped onto ``shape`` (canvas coordinates), as RGB."""
    rgb = from_lab(lab)
    pts_s = np.vstack([template, _BORDER])
    pts_d = np.vstack([shape, _BORDER])
    out, _ = piecewise_affine(rgb, pts_s, pts_d, delaunay(pts_s), (0, 0, SIZE, SIZE),
                              interpolation=cv2.INTER_CUBIC)
    return out


def flatten_background(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Blur far outside the face (the swap never reads it): the PNG shrinks a lot."""
    c = lm.mean(axis=0)
    keep = hull_mask(c + 1.9 * (lm[:27] - c)).astype(np.float32)
    keep = cv2.GaussianBlur(keep, (0, 0), 6)
    blurred = cv2.GaussianBlur(img, (0, 0), 12)
    return np.clip(np.rint(img * keep[..., None] + blurred * (1 - keep[..., None])), 0, 255).astype(np.uint8)


def detect_built(img: np.ndarray, guess: np.ndarray):
    """(landmarks, descriptor) dlib sees in a built image, or None if it sees no face."""
    det = detect_faces(img, faces="largest", verify_below=None, threshold=-0.5)
    if not det.faces:
        return None
    return det.faces[0].landmarks.astype(np.float64), face_descriptor(img, det.faces[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, default=shared_dir() / "data" / "train_faces")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "imnkit" / "data" / "identities")
    ap.add_argument("--count", type=int, default=28, help="identities to keep (at most)")
    ap.add_argument("--candidates", type=int, default=14, help="random groups tried per look")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-up", type=int, default=None, metavar="SEED",
                    help="while under --count, draw as many candidates again with this seed and keep those distinct from the pool")
    ap.add_argument("--extend", action="store_true",
                    help="keep the pool in --out and add darker-skinned / missing-look composites (needs --cc0)")
    ap.add_argument("--cc0", type=Path, help=f"folder of {CC0_REPO}'s '{CC0_FOLDER}' images at {CC0_COMMIT[:12]}")
    ap.add_argument("--looks-only", action="store_true", help="only refit looks.json")
    ap.add_argument("--try-dark-adult-women", type=int, default=0, metavar="N",
                    help="dry run: N darker-skinned adult-woman candidates of another recipe (needs --cc0; writes nothing)")
    ap.add_argument("--strip", type=Path, help="with --try-dark-adult-women: save the usable candidates side by side here")
    ap.add_argument("--descriptors-only", action="store_true",
                    help="only (re)write the identities' descriptors into the pool's identities.json")
    args = ap.parse_args()

    if args.descriptors_only:
        add_descriptors(args.out)
        return

    rows = check_licences(args.train)
    if args.try_dark_adult_women:
        if args.cc0 is None:
            raise SystemExit("--try-dark-adult-women needs --cc0 DIR")
        try_dark_adult_women(args)
        return
    if args.extend:
        if args.cc0 is None:
            raise SystemExit("--extend needs --cc0 DIR")
        extend(args, rows)
        return
    fit_looks(args.train, args.out, args.cc0)
    if args.looks_only:
        return
    print(f"aligning {len(PEOPLE)} contributor photos ...", file=sys.stderr)
    contrib = Contributors(args.train)
    cands = make_candidates(contrib, args.candidates, np.random.default_rng(args.seed))
    folded = sum(folds(contrib.template, c[4]) > 0 for c in cands)
    scored = score_candidates(cands, contrib.template)
    print(f"{folded} of {len(cands)} candidates fold their texture; {len(scored)} of the rest are whole on the "
          "canvas and >= 0.6 from all their contributors", file=sys.stderr)
    kept = keep_distinct(scored, args.count)
    if args.top_up is not None and len(kept) < args.count:
        more = score_candidates(make_candidates(contrib, args.candidates, np.random.default_rng(args.top_up)),
                                contrib.template)
        kept = keep_distinct(more, args.count, kept)
        print(f"top-up (seed {args.top_up}): {len(more)} usable candidates, pool now {len(kept)}", file=sys.stderr)
    astro = astronaut(contrib.template, kept)
    if astro is not None:
        kept.append(astro)
    write_pool(args, kept, rows)


def extend(args, rows: dict[str, dict]) -> None:
    """--extend: the shipped identities kept, new composites (darker-skinned first) added up to --count."""
    print(f"aligning {len(PEOPLE)} + {len(CC0_PEOPLE)} contributor photos ...", file=sys.stderr)
    contrib = Contributors(args.train)
    contrib.add_cc0(args.cc0)
    kept = existing_pool(args.out, contrib)
    rng = np.random.default_rng(args.seed)
    cands = make_dark_candidates(contrib, args.candidates, rng) + make_candidates(contrib, args.candidates // 2, rng)
    scored = score_candidates(cands, contrib.template)
    print(f"{len(scored)} of {len(cands)} candidates are whole, unfolded and >= 0.6 from all their contributors",
          file=sys.stderr)
    for look in LOOKS:
        mine = [c for c in scored if c["look"] == look]
        print(f"  {look[0]}/{look[1]}: {len(mine)} usable, darker-skinned (texture) {sum('darker' in c['how'] for c in mine)}",
              file=sys.stderr)
    kept = extend_pool(scored, kept, args.count)
    for file in CC0_PEOPLE:
        rows[f"cc0:{file}"] = {"repo": CC0_REPO, "path_in_repo": f"{CC0_FOLDER}/{file}", "commit": CC0_COMMIT,
                               "licence_of_repo": CC0_LICENCE}
    write_pool(args, kept, rows)


def dark_adult_women_candidates(contrib: Contributors, n: int, rng: np.random.Generator) -> list[tuple]:
    """``n`` darker-skinned adult-woman candidates (look, members, how, rgb, shape, ex).

    The texture of 3-5 darker-skinned CC0 women (not 6-9: fewer shared with the pool's darker-skinned
    women's composites) moved by the adult-women minus young-women texture difference (eyes left
    out), on the mean shape of 2-3 of the permissively licensed adult women (not of the darker-skinned
    women, whose shapes the older women's composites already carry), pushed 1.2-2x.
    """
    t, face, mouth_w = contrib.template, contrib.face, contrib.mouth_w
    young, adult = contrib.composite(contrib.group_of("f", "young"), 0.0), contrib.composite(contrib.group_of("f", "adult"), 0.0)
    eye_w = cv2.GaussianBlur((hull_mask(t[36:42]) | hull_mask(t[42:48])).astype(np.float32), (0, 0), 3)[..., None]
    cheeks = cheek_mask(t)
    dark = [p for p in contrib.people if p.dark and p.look[0] == "f"]
    shapes = contrib.group_of("f", "adult")
    darkest = [p for p in dark if p.key.partition(":")[2] in CC0_DARKEST]
    mu_t = np.mean([p.lab[face].mean(axis=0) for p in darkest], axis=0)
    sd_t = np.mean([p.lab[face].std(axis=0) for p in darkest], axis=0)
    cheek_t = np.mean([np.median(p.lab[cheeks], axis=0) for p in darkest], axis=0)
    closed = average([p for p in dark if p.closed], face, mouth_w)
    closed = (closed - closed[face].mean(axis=0)) / np.maximum(closed[face].std(axis=0), 1e-3) * sd_t + mu_t
    cands = []
    for _ in range(n):
        tex = [dark[j] for j in sorted(rng.choice(len(dark), size=int(rng.integers(3, 6)), replace=False))]
        shp = [shapes[j] for j in sorted(rng.choice(len(shapes), size=int(rng.integers(2, 4)), replace=False))]
        ex, ex_t = float(rng.choice([1.2, 1.6, 2.0])), float(rng.choice([0.5, 1.0]))
        lab = contrib.composite(tex, ex_t)[0]
        lab = (lab - lab[face].mean(axis=0)) / np.maximum(lab[face].std(axis=0), 1e-3) * sd_t + mu_t
        lab = lab + (adult[0] - young[0]) * (1.0 - eye_w)
        lab = lab * (1 - mouth_w[..., None]) + closed * mouth_w[..., None]
        lab[..., [0, 2]] += (cheek_t - np.median(lab[cheeks], axis=0))[[0, 2]]
        shape = contrib.composite(shp, ex)[1]
        how = f"texture of {len(tex)} darker-skinned women, shape of {len(shp)} adult women pushed {ex:g}x"
        cands.append((("f", "adult"), tex + shp, how, render(lab, t, shape), shape, ex))
    return cands


def try_dark_adult_women(args) -> None:
    """--try-dark-adult-women N: a dry run of another recipe for the missing darker-skinned adult
    woman; prints each candidate's tone and distances and writes the usable ones to a contact
    strip (``--strip``), nothing into the pool (``scripts/dark_adult_woman.py`` adds one, with one
    person's eyes)."""
    contrib = Contributors(args.train)
    contrib.add_cc0(args.cc0)
    kept = existing_pool(args.out, contrib)
    t = contrib.template
    cands = dark_adult_women_candidates(contrib, args.try_dark_adult_women, np.random.default_rng(args.seed))
    scored = score_candidates(cands, t)
    print(f"{len(scored)} of {len(cands)} candidates are whole, unfolded and >= 0.6 from all their contributors",
          file=sys.stderr)
    usable = []
    for c in scored:
        tone = skin_tone(flatten_background(c["rgb"], c["lm"]), c["lm"])
        near = min(kept, key=lambda k: descriptor_distance(c["desc"], k["desc"]))
        gap = descriptor_distance(c["desc"], near["desc"])
        print(f"  {c['how']}: ITA {tone:.1f}, {c['near']:.3f} from its nearest contributor, {gap:.3f} from "
              f"{near['name']}", file=sys.stderr)
        if tone < DARK_ITA and gap >= 0.6:
            usable.append(c)
    print(f"usable (darker-skinned and >= 0.6 from every identity): {len(usable)}", file=sys.stderr)
    if usable and args.strip:
        strip = np.hstack([cv2.resize(c["rgb"], (256, 256), interpolation=cv2.INTER_AREA) for c in usable])
        Image.fromarray(strip).save(args.strip)


def check_licences(train: Path) -> dict[str, dict]:
    """The rows of the photos' SOURCES.tsv; stops unless every listed photo's licence is permissive."""
    rows = {r["file"]: r for r in csv.DictReader(open(train / "SOURCES.tsv"), delimiter="\t")}
    for key in {**PEOPLE, **EXTRA_LABELLED}:
        lic = rows[key.partition("#")[0]]["licence_of_repo"]
        if not lic.startswith(PERMISSIVE):
            raise SystemExit(f"{key}: licence {lic!r} is not permissive")
    return rows


class Contributors:
    """All contributors on one closed-mouth template, with the averages composites are pushed from."""

    def __init__(self, train: Path):
        found = {k: face_of(train, k) for k in PEOPLE}
        self.template = canvas(close_lips(procrustes_mean([f.landmarks for _, f in found.values()])))
        self.people = [Person(k, img, f, self.template, PEOPLE[k]) for k, (img, f) in found.items()]
        self.face = hull_mask(self.template)
        c = self.template[48:68].mean(axis=0)
        self.mouth_w = cv2.GaussianBlur(hull_mask(c + 1.3 * (self.template[48:60] - c)).astype(np.float32), (0, 0), 5)
        self.all_lab = average(self.people, self.face, self.mouth_w)
        self.all_shape = np.mean([p.shape for p in self.people], axis=0)

    def add_cc0(self, folder: Path) -> None:
        """Add the CC0 people (``CC0_PEOPLE``) from ``folder``; the template and averages stay those of PEOPLE."""
        for file, (gender, age, dark) in CC0_PEOPLE.items():
            img = load_rgb(folder / file)
            faces = detect_faces(img, faces="all", verify_below=None).faces
            if not faces:
                raise SystemExit(f"no face found in {folder / file}")
            self.people.append(Person(f"cc0:{file}", img, faces[0], self.template, (gender, age), dark,
                                      file in CC0_BEARDED))

    def group_of(self, gender: str, age: str) -> list[Person]:
        return [p for p in self.people if p.look == (gender, age)]

    def composite(self, group: list[Person], ex: float):
        """Texture and shape of a group, pushed ``ex`` away from the all-contributor average.

        The texture is pushed in lightness only and at most 1x (pushed colour turns garish,
        and the swap sets the skin colour from the photo anyway); the shape the full ``ex``.
        """
        lab = average(group, self.face, self.mouth_w)
        shape = close_lips(np.mean([p.shape for p in group], axis=0))
        push = np.zeros_like(lab)
        push[..., 0] = min(ex, 1.0) * (lab[..., 0] - self.all_lab[..., 0])
        return lab + push, shape + ex * (shape - self.all_shape)


def make_candidates(contrib: Contributors, per_look: int, rng: np.random.Generator) -> list[tuple]:
    """``per_look`` seeded random composites of every look: (look, members, how, rgb, shape, ex)."""
    group_of, composite, mouth_w = contrib.group_of, contrib.composite, contrib.mouth_w
    # Prototypes for the age transforms (older women from adult ones, children from young adults).
    proto = {look: composite(group_of(*look), 0.0) for look in LOOKS}
    kids = group_of("f", "child") + group_of("m", "child")
    # Clean closed lips for every composite: the mouth of all closed-mouth photos of a gender.
    closed_lab = {g: average([p for p in contrib.people if p.closed and p.look[0] == g and p.look[1] != "child"],
                             contrib.face, mouth_w)
                  for g in ("f", "m")}
    proto["child"] = composite(kids, 0.0)
    cands = []  # (look, members, how, rgb, shape, ex)

    def pick(base: list[Person], k: int, avoid=()) -> list[Person]:
        free = [p for p in base if p not in avoid]
        return [free[j] for j in sorted(rng.choice(len(free), size=min(k, len(free)), replace=False))]

    for gender, age in LOOKS:
        word = "women" if gender == "f" else "men"
        tex_look = (gender, "young") if age == "child" else (gender, "adult") if len(group_of(gender, age)) < 3 else (gender, age)
        base = [p for p in group_of(*tex_look) if not (age == "child" and p.beard)]
        for i in range(per_look):
            # A clean texture needs many faces (a few ghost); a face of its own needs a
            # distinctive shape: the texture of 6-9 people on the pushed mean shape of 2-4
            # (possibly other) people of the same look.
            ex = float(rng.choice([0.8, 1.2, 1.6]))
            ex_t = float(rng.choice([0.5, 1.0]))
            tex = pick(base, int(rng.integers(6, 10)))
            shp = pick(base, int(rng.integers(2, 5)))
            lab = composite(tex, ex_t)[0]
            shape = composite(shp, ex)[1]
            members = tex + [p for p in shp if p not in tex]
            how = (f"the average texture of {len(tex)} {tex_look[1]} {word} (lightness pushed {ex_t:g}x from the all-contributor "
                   f"average) on the mean face shape of {len(shp)} (pushed {ex:g}x)")
            if tex_look != (gender, age):
                # Age looks the photos lack: Rowland & Perrett's prototype transform.
                if age == "child":
                    src, dst, who = proto[gender, "young"], proto["child"], "all-children minus young-" + word
                    members += kids
                else:
                    other = "m" if gender == "f" else "f"
                    src, dst, who = proto[other, "adult"], proto[other, age], f"{'men' if other == 'm' else 'women'}'s {age}-minus-adult"
                lab = lab + dst[0] - src[0]
                shape = shape + dst[1] - src[1]
                how += f", moved by the {who} prototype difference"
            lab = lab * (1 - mouth_w[..., None]) + closed_lab[gender] * mouth_w[..., None]
            cands.append(((gender, age), members, how, render(lab, contrib.template, shape), shape, ex))
        print(f"  {gender}/{age}: {per_look} candidates", file=sys.stderr)
    return cands


#: landmarks of the brows, nose and eyes: a fold among them shows as a patch in the middle of the face
_CENTRE = set(range(17, 48))


def folds(template: np.ndarray, shape: np.ndarray) -> int:
    """Triangles between brows, nose and eyes that the warp of the texture onto ``shape`` turns over.

    A shape pushed far from a few people's mean can carry its nose past an eye corner: the warp then
    folds the texture over itself and shows a sharp-edged pale triangle (the first pool's
    woman_young_5). Folds at the jaw and between the closed lips are hidden by the swap's mask
    and its lips, and are not counted.
    """
    src, dst = np.vstack([template, _BORDER]), np.vstack([shape, _BORDER])
    tri = np.array([t for t in delaunay(src) if set(t.tolist()) <= _CENTRE])

    def area(p):
        a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    return int(np.sum(area(src) * area(dst) < 0))


def score_candidates(cands: list[tuple], template: np.ndarray) -> list[dict]:
    """The candidates whose warp does not fold, that dlib sees whole on the canvas and puts >= 0.6 from
    each of their contributors."""
    scored = []
    why: dict[str, int] = {}
    for look, members, how, rgb, shape, ex in cands:
        if folds(template, shape):
            why["folds"] = why.get("folds", 0) + 1
            continue
        seen = detect_built(rgb, shape)
        if seen is None:
            why["unseen"] = why.get("unseen", 0) + 1
            continue
        lm, desc = seen
        if lm.min() < 4 or lm.max() > SIZE - 5:
            why["off canvas"] = why.get("off canvas", 0) + 1
            continue  # the face does not fit the canvas (a shape pushed too far)
        near = min(descriptor_distance(desc, p.desc) for p in members)
        if near < 0.6:
            why["near a contributor"] = why.get("near a contributor", 0) + 1
            continue
        scored.append({"look": look, "members": members, "how": how, "rgb": rgb, "lm": lm, "desc": desc, "near": near, "ex": ex})
    print(f"  candidates left out: {why}", file=sys.stderr)
    return scored


def keep_distinct(scored: list[dict], count: int, kept: list[dict] | None = None) -> list[dict]:
    """Up to ``count`` candidates, named, each >= 0.6 from every one kept before it (``kept``: those
    already kept, which stay first).

    The looks are taken in turn, each time the least exaggerated candidate (the most natural;
    then the farthest from its contributors).
    """
    kept = list(kept or [])
    by_look = {look: sorted([c for c in scored if c["look"] == look], key=lambda c: (c["ex"], -c["near"])) for look in LOOKS}
    while len(kept) < count and any(by_look.values()):
        for look in LOOKS:
            while by_look[look]:
                c = by_look[look].pop(0)
                if all(descriptor_distance(c["desc"], k["desc"]) >= 0.6 for k in kept):
                    n = sum(k["look"] == look for k in kept) + 1
                    c["name"] = f"{'woman' if look[0] == 'f' else 'man'}_{look[1]}_{n}" if look[1] != "child" else f"{'girl' if look[0] == 'f' else 'boy'}_{n}"
                    kept.append(c)
                    break
            if len(kept) >= count:
                break
    return kept


def make_dark_candidates(contrib: Contributors, per_look: int, rng: np.random.Generator) -> list[tuple]:
    """``per_look`` composites of every look from darker-skinned people only (texture and shape),
    moved to the look's age by prototype differences; as :func:`make_candidates`."""
    group_of, composite, mouth_w = contrib.group_of, contrib.composite, contrib.mouth_w
    proto = {look: composite(group_of(*look), 0.0) for look in LOOKS if len(group_of(*look)) >= 3}
    kids = group_of("f", "child") + group_of("m", "child")
    proto["f", "child"] = proto["m", "child"] = composite(kids, 0.0)
    fa, ms, ma = proto["f", "adult"], proto["m", "senior"], proto["m", "adult"]
    proto["f", "senior"] = (fa[0] + ms[0] - ma[0], fa[1] + ms[1] - ma[1])
    # The age differences leave the eyes alone: the seniors' and children's prototypes are of
    # light-eyed people, and their difference turned dark irises pale.
    t = contrib.template
    eye_w = cv2.GaussianBlur((hull_mask(t[36:42]) | hull_mask(t[42:48])).astype(np.float32), (0, 0), 3)[..., None]
    cheeks = cheek_mask(t)
    cands = []
    for gender, age in LOOKS:
        word = "women" if gender == "f" else "men"
        dark = [p for p in contrib.people if p.dark and p.look[0] == gender]
        if age == "child":  # no beards; boys topped up with the women's faces when too few men are clean-shaven
            dark = [p for p in dark if not p.beard]
            if len(dark) < 6:
                dark += [p for p in contrib.people if p.dark and p.look[0] != gender]
                word = "women and men"
        closed = average([p for p in dark if p.closed], contrib.face, mouth_w)
        # Skin colour statistics (face region, Lab) of the darkest-skinned people of this gender.
        darkest = [p.lab[contrib.face] for p in contrib.people if p.key.partition(":")[2] in CC0_DARKEST and p.look[0] == gender]
        mu_t = np.mean([d.mean(axis=0) for d in darkest], axis=0)
        sd_t = np.mean([d.std(axis=0) for d in darkest], axis=0)
        cheek_t = np.mean([np.median(p.lab[cheeks], axis=0) for p in contrib.people
                           if p.key.partition(":")[2] in CC0_DARKEST and p.look[0] == gender], axis=0)
        closed = (closed - closed[contrib.face].mean(axis=0)) / np.maximum(closed[contrib.face].std(axis=0), 1e-3) * sd_t + mu_t
        src, dst = proto[gender, "young"], proto[gender, age]
        for _ in range(per_look):
            ex = float(rng.choice([0.8, 1.2, 1.6]))
            ex_t = float(rng.choice([0.5, 1.0]))
            k = min(len(dark), int(rng.integers(6, 10)))
            tex = [dark[j] for j in sorted(rng.choice(len(dark), size=k, replace=False))]
            shp = [dark[j] for j in sorted(rng.choice(len(dark), size=int(rng.integers(2, 5)), replace=False))]
            lab = composite(tex, ex_t)[0]
            mu, sd = lab[contrib.face].mean(axis=0), lab[contrib.face].std(axis=0)
            lab = (lab - mu) / np.maximum(sd, 1e-3) * sd_t + mu_t  # the darkest people's skin colour
            shape = composite(shp, ex)[1]
            members = tex + [p for p in shp if p not in tex]
            how = (f"the average texture of {len(tex)} darker-skinned {word} (lightness pushed {ex_t:g}x from the "
                   f"all-contributor average; skin colour statistics of the darkest-skinned of them) on the mean face "
                   f"shape of {len(shp)} of them (pushed {ex:g}x)")
            if age != "young":
                # Children: the difference taken up to 1.4x (dlib tells children apart poorly; a
                # stronger move keeps more candidates >= 0.6 from the children and women they come from).
                gain = float(rng.choice([1.0, 1.4])) if age == "child" else 1.0
                lab = lab + gain * (dst[0] - src[0]) * (1.0 - eye_w)
                shape = shape + gain * (dst[1] - src[1])
                if age == "child":
                    members += kids
                    how += (f", moved by {gain:g}x the all-children minus young-{'women' if gender == 'f' else 'men'} "
                            "prototype difference")
                elif (gender, age) == ("f", "senior"):
                    how += ", moved by the adult-women minus young-women and the men's senior-minus-adult prototype differences"
                else:
                    how += f", moved by the {age}-{word} minus young-{word} prototype difference"
            lab = lab * (1 - mouth_w[..., None]) + closed * mouth_w[..., None]
            # The cheeks' lightness and yellowness (what the ITA reads) set to the darkest people's:
            # the averaging and the age differences lighten them.
            lab[..., [0, 2]] += (cheek_t - np.median(lab[cheeks], axis=0))[[0, 2]]
            cands.append(((gender, age), members, how, render(lab, contrib.template, shape), shape, ex))
        print(f"  darker-skinned {gender}/{age}: {per_look} candidates", file=sys.stderr)
    return cands


def cheek_mask(lm: np.ndarray) -> np.ndarray:
    """The cheeks on the canvas, as :func:`imnkit.face.identities.skin_tone` reads them."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for poly in (lm[[1, 2, 3, 48, 31, 39, 40, 41, 36]], lm[[15, 14, 13, 54, 35, 42, 47, 46, 45]]):
        c = poly.mean(axis=0)
        cv2.fillPoly(mask, [np.round(c + 0.7 * (poly - c)).astype(np.int32)], 1)
    return mask.astype(bool)


def existing_pool(out: Path, contrib: Contributors) -> list[dict]:
    """The identities already in ``out`` as kept entries (descriptor and nearest contributor from the
    manifest's stored descriptor); they stay as they are."""
    meta = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    by_key = {p.key: p for p in contrib.people}
    kept = []
    for e in meta["identities"]:
        desc = np.asarray(e["descriptor"], dtype=np.float64)
        members = [by_key[k] for k in e.get("contributors", []) if k in by_key]
        near = min((descriptor_distance(desc, p.desc) for p in members), default=float("nan"))
        kept.append({"name": e["name"], "look": (e["gender"], e["age"]), "desc": desc, "members": members,
                     "near": near, "entry": e, "tone": float(e["tone"])})
    return kept


def extend_pool(scored: list[dict], kept: list[dict], count: int) -> list[dict]:
    """Add candidates to ``kept`` (each >= 0.6 from all before it): first a darker-skinned one for every
    look without one, then one for every look under 3 identities, then darker-skinned ones for the
    looks with the fewest, until ``count``. Least exaggerated first within a look."""
    kept = list(kept)
    for c in scored:
        c["tone"] = skin_tone(flatten_background(c["rgb"], c["lm"]), c["lm"])
    by_look = {look: sorted([c for c in scored if c["look"] == look], key=lambda c: (c["ex"], -c["near"])) for look in LOOKS}

    def add(look, dark_only: bool) -> bool:
        for c in by_look[look]:
            if dark_only and not c["tone"] < DARK_ITA:
                continue
            if all(descriptor_distance(c["desc"], k["desc"]) >= 0.6 for k in kept):
                n = sum(k["look"] == look for k in kept) + 1
                c["name"] = f"{'woman' if look[0] == 'f' else 'man'}_{look[1]}_{n}" if look[1] != "child" else f"{'girl' if look[0] == 'f' else 'boy'}_{n}"
                kept.append(c)
                by_look[look].remove(c)
                return True
        return False

    for look in LOOKS:
        if not any(k["look"] == look and k["tone"] < DARK_ITA for k in kept):
            if not add(look, True):
                print(f"  no darker-skinned {look[0]}/{look[1]} candidate is >= 0.6 from the pool", file=sys.stderr)
    for look in LOOKS:
        while sum(k["look"] == look for k in kept) < 3 and (add(look, True) or add(look, False)):
            pass
    while len(kept) < count:
        order = sorted(LOOKS, key=lambda lk: (sum(k["look"] == lk and k["tone"] < DARK_ITA for k in kept),
                                              sum(k["look"] == lk for k in kept)))
        if not any(add(look, True) for look in order):
            break
    return kept


def astronaut(template: np.ndarray, kept: list[dict]) -> dict | None:
    """The public-domain portrait on the template, if dlib puts it >= 0.6 from every kept identity."""
    skimage_dir = Path(__import__("skimage").__file__).parent
    astro_img = load_rgb(skimage_dir / "data" / "astronaut.png")
    astro_face = detect_faces(astro_img, faces="largest", verify_below=None).faces[0]
    m = umeyama(astro_face.landmarks, template)
    astro = cv2.warpAffine(astro_img, m, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    seen = detect_built(astro, template)
    if seen is None or not all(descriptor_distance(seen[1], k["desc"]) >= 0.6 for k in kept):
        return None
    return {"name": "astronaut", "look": ("f", "adult"), "members": [], "rgb": astro, "lm": seen[0],
            "desc": seen[1], "near": float("nan"), "how": ""}


#: hand labels of more training faces for the look model only (see the file's header)
LOOK_LABELS = Path(__file__).resolve().parent / "look_labels.tsv"
#: the look model also learns each labelled face shrunk to these jaw widths (px; faces of group
#: photos are often 25-40 px wide, the labelled photos mostly 100-600) and turned grey
LOOK_SHRINK = (32.0, 64.0)


def look_labels(train: Path, cc0: Path | None) -> dict[tuple[str, str], tuple[str, str]]:
    """(folder, file[#k]) -> (gender, age) of every face the look model learns from: PEOPLE and
    EXTRA_LABELLED, the rows of LOOK_LABELS, and (with ``cc0``) CC0_PEOPLE; a training photo
    whose licence is not permissive stops the fit."""
    rows = {r["file"]: r for r in csv.DictReader(open(train / "SOURCES.tsv"), delimiter="\t")}
    out = {(str(train), k): v for k, v in {**PEOPLE, **EXTRA_LABELLED}.items()}
    lines = [ln for ln in LOOK_LABELS.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    for r in csv.DictReader(lines, delimiter="\t"):
        if r["source"] == "train":
            lic = rows[r["face"].partition("#")[0]]["licence_of_repo"]
            if not lic.startswith(PERMISSIVE):
                raise SystemExit(f"{LOOK_LABELS.name}: {r['face']}: licence {lic!r} is not permissive")
            out[(str(train), r["face"])] = (r["gender"], r["age"])
        elif cc0 is not None:
            out[(str(cc0), r["face"])] = (r["gender"], r["age"])
    if cc0 is not None:
        out.update({(str(cc0), f): (g, a) for f, (g, a, _) in CC0_PEOPLE.items()})
    else:
        print("look model: no --cc0 folder, the CC0 people are left out", file=sys.stderr)
    return out


def look_variants(img: np.ndarray, face) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(kind, look descriptor, geometry, context) of a face "found", "shrunk" to each LOOK_SHRINK
    jaw width it is wider than (landmarks fitted again on the small image, as a small face's
    are), "grey"."""

    def read(kind: str, image: np.ndarray, f) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        return kind, look_descriptor(image, f), geometry_features(f.landmarks), context_features(image, f.landmarks)

    out = [read("found", img, face)]
    jaw = float(np.linalg.norm(face.landmarks[16] - face.landmarks[0]))
    for target in LOOK_SHRINK:
        if jaw > 1.3 * target:
            s = target / jaw
            small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            box = make_face(face.landmarks * s, tuple(int(round(v * s)) for v in face.box))
            out.append(read("shrunk", small, make_face(fit_landmarks(small, predictor_box(box)), box.box)))
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    out.append(read("grey", grey, face))
    return out


def fit_looks(train: Path, out: Path, cc0: Path | None = None, ridge: float = 0.1) -> None:
    """Fit and write looks.json: gender (+1 f, -1 m) and age band (0..3) from look descriptors
    (:func:`imnkit.face.looks.look_descriptor`) and the age proportions, gender also from the
    colours around the face (:func:`imnkit.face.looks.context_features`).

    Every labelled face (:func:`look_labels`) is learnt in its variants (:func:`look_variants`).
    Prints the leave-one-photo-out accuracy (all variants of a photo left out together; sign
    of gender; age band from the cut points) on the faces as found and on the shrunk ones.
    """
    descs, geo, ctx, yg, ya, photo, kind = [], [], [], [], [], [], []
    for (folder, key), (g, a) in look_labels(train, cc0).items():
        img, f = face_of(Path(folder), key)
        for k, d, gf, cf in look_variants(img, f):
            descs.append(d)
            geo.append(gf)
            ctx.append(cf)
            yg.append(1.0 if g == "f" else -1.0)
            ya.append(float(LOOKS_AGES.index(a)))
            photo.append(f"{folder}/{key.partition('#')[0]}")
            kind.append(k)
    geo, ctx, photo, kind = np.asarray(geo), np.asarray(ctx), np.asarray(photo), np.asarray(kind)
    first = kind == "found"
    g_mean, g_scale = geo[first].mean(axis=0), 0.3 / geo[first].std(axis=0)  # 0.3: weight against the descriptor
    c_mean, c_scale = ctx[first].mean(axis=0), 0.3 / ctx[first].std(axis=0)  # the same weight
    # Age is read from the face (descriptor, proportions); gender presentation also from what
    # surrounds it (long hair falls beside a girl's jaw as beside a young woman's: no age cue).
    xa = np.asarray([np.r_[look_features(d, None, g_mean, g_scale, geo=gf), 1.0] for d, gf in zip(descs, geo)])
    xg = np.c_[xa, (ctx - c_mean) * c_scale]

    def fit(x, idx, y):
        reg = ridge * np.eye(x.shape[1])
        reg[len(descs[0]) + len(g_mean), len(descs[0]) + len(g_mean)] = 0.0  # the intercept
        return np.linalg.solve(x[idx].T @ x[idx] + reg, x[idx].T @ y[idx])

    yg, ya = np.asarray(yg), np.asarray(ya)
    pg, pa = np.zeros(len(xa)), np.zeros(len(xa))
    for p in np.unique(photo):
        out_p = photo == p
        pg[out_p] = xg[out_p] @ fit(xg, ~out_p, yg)
        pa[out_p] = xa[out_p] @ fit(xa, ~out_p, ya)
    # Cut points between age bands from the leave-one-out predictions (a ridge fit shrinks
    # towards the mean: children come out near 0.5, not 0): midway between band means.
    means = [float(pa[first & (ya == b)].mean()) for b in range(len(LOOKS_AGES))]
    cuts = [round((means[b] + means[b + 1]) / 2, 3) for b in range(len(LOOKS_AGES) - 1)]
    shrunk = kind == "shrunk"
    loo = {"gender": round(float(np.mean(np.sign(pg[first]) == yg[first])), 3),
           "age_band": round(float(np.mean(np.searchsorted(cuts, pa[first]) == ya[first])), 3),
           "gender_shrunk": round(float(np.mean(np.sign(pg[shrunk]) == yg[shrunk])), 3)}
    n = int(first.sum())
    print(f"look model, leave-one-photo-out over {n} faces: gender {loo['gender']:.1%}, age band "
          f"{loo['age_band']:.1%}; gender on the shrunk faces {loo['gender_shrunk']:.1%}", file=sys.stderr)
    every = np.ones(len(xa), bool)
    wg, wa = fit(xg, every, yg), fit(xa, every, ya)
    k = xa.shape[1] - 1  # the intercept's column; the gender weights' context part follows it
    meta = {
        "about": "ridge regression from look descriptors (mean of a face's and its mirror image's dlib descriptor) "
                 "age proportions (and for gender the colours around the face: hair, neck): gender +1 woman / -1 man look, age 0 child .. 3 senior; fitted by "
                 f"scripts/build_identities.py on {n} hand-labelled faces of permissively licensed and CC0 photos, "
                 "each also shrunk and grey",
        "leave_one_out": loo,
        "geometry": {"mean": np.round(g_mean, 6).tolist(), "scale": np.round(g_scale, 6).tolist()},
        "context": {"mean": np.round(c_mean, 6).tolist(), "scale": np.round(c_scale, 6).tolist()},
        "gender": {"w": np.round(np.r_[wg[:k], wg[k + 1:]], 6).tolist(), "b": round(float(wg[k]), 6)},
        "age": {"w": np.round(wa[:k], 6).tolist(), "b": round(float(wa[k]), 6), "cuts": cuts},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "looks.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")


def write_pool(args, kept, rows) -> None:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    keep_files = {k["entry"]["file"] for k in kept if "entry" in k}
    for old in out.glob("*.png"):
        if old.name not in keep_files:
            old.unlink()
    entries = []
    for k in kept:
        if "entry" in k:  # an identity already in the pool (--extend): unchanged
            entries.append(k["entry"])
            continue
        img = flatten_background(k["rgb"], k["lm"])
        path = out / f"{k['name']}.png"
        Image.fromarray(img).save(path, optimize=True)
        if k["name"] == "astronaut":
            origin = ("Eileen Collins, NASA portrait (public domain), from scikit-image "
                      "skimage/data/astronaut.png, similarity-aligned and cropped")
            licence = "public domain"
        else:
            origin = f"synthesised composite: {k['how']} (contributors in SOURCES.md); built by scripts/build_identities.py"
            licence = "synthesised composite; contributors from " + " and ".join(
                sorted({"a CC0 repository" if p.key.startswith("cc0:") else "MIT/Apache-2.0/BSD/Boost licensed repositories"
                        for p in k["members"]}))
        entries.append({
            "name": k["name"], "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "landmarks": np.round(k["lm"], 2).tolist(),
            "descriptor": stored_descriptor(img, np.round(k["lm"], 2)),
            "gender": k["look"][0], "age": k["look"][1], "tone": round(skin_tone(img, k["lm"]), 1),
            "origin": origin, "licence": licence,
            "contributors": [p.key for p in k["members"]],
        })
    meta = {"format": FORMAT_VERSION, "size": SIZE, "identities": entries}
    (out / MANIFEST).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    pair = [descriptor_distance(a["desc"], b["desc"]) for i, a in enumerate(kept) for b in kept[i + 1:]]
    lines = [f"{len(kept)} identities; pairwise dlib distance min {min(pair):.3f}, median {np.median(pair):.3f}",
             "nearest contributor of each composite:"]
    for k in kept:
        if k["members"]:
            lines.append(f"  {k['name']:16s} {k['near']:.3f}  ({len(k['members'])} contributors)")
    report = "\n".join(lines)
    print(report)
    write_sources(out, entries, rows, report)


def stored_descriptor(img: np.ndarray, lm: np.ndarray) -> list[float]:
    """An identity's descriptor as the manifest stores it: of the shipped pixels and landmarks, as
    the swap would compute it."""
    desc = pool_face_descriptor(img, np.asarray(lm, dtype=np.float32))
    return [round(float(v), 6) for v in desc]


def add_descriptors(out: Path) -> None:
    """Write each identity's descriptor into an existing pool's manifest (nothing else changes)."""
    manifest = out / MANIFEST
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    for entry in meta["identities"]:
        entry["descriptor"] = stored_descriptor(load_rgb(out / entry["file"]), np.asarray(entry["landmarks"]))
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    tmp.replace(manifest)
    print(f"descriptors written for {len(meta['identities'])} identities in {manifest}", file=sys.stderr)


def write_sources(out: Path, entries, rows, report: str) -> None:
    md = [
        "# Built-in replacement identities",
        "",
        "Built by `scripts/build_identities.py`; rebuild with",
        "`PYTHONPATH=src python scripts/build_identities.py --candidates 40 --seed 3 --top-up 4 --count 23`",
        "(needs ../shared/data/train_faces), then add the darker-skinned and missing-look composites with",
        "`PYTHONPATH=src python scripts/build_identities.py --extend --cc0 DIR --candidates N --seed S --count 41`",
        "three times, (N, S) = (30, 5), (24, 6), (24, 7)",
        f"(DIR: the `{CC0_FOLDER}` folder of {CC0_REPO} at commit {CC0_COMMIT}), then give each composite",
        "the eyes of one person with `PYTHONPATH=src python scripts/identity_eyes.py --cc0 DIR` and add the",
        "darker-skinned adult woman with `PYTHONPATH=src python scripts/dark_adult_woman.py --cc0 DIR`.",
        f"Each identity is a {SIZE}x{SIZE} RGB PNG aligned to one landmark template, with its 68 dlib",
        "landmarks, look (gender presentation, age band) and skin tone (ITA degrees) in `identities.json`.",
        "",
        "| identity | look | origin | licence |",
        "|---|---|---|---|",
    ]
    for e in entries:
        md.append(f"| {e['name']} | {e['gender']}/{e['age']} | {e['origin']} | {e['licence']} |")
    md += [
        "",
        "## How the composites are made",
        "",
        "Every contributor photo is aligned by its 68 dlib landmarks and warped piecewise-affinely",
        "onto a closed-mouth template (the Procrustes mean of all contributors' landmarks), its face",
        "colour statistics (Lab) set to the group's mean, and the textures averaged (closed mouths",
        "weighing more around the mouth). The average texture and the group's mean shape are pushed",
        "away from the all-contributor average, and the texture is warped onto that shape. A",
        "composite is kept only when that warp does not turn the texture over between the brows,",
        "nose and eyes, and dlib's descriptor puts it >= 0.6 from every one of its contributors and",
        "from every identity kept before it. No contributor photo is shipped.",
        "",
        "```",
        report,
        "```",
        "",
        "## Contributors",
        "",
        "Files of `shared/data/train_faces/` (see its SOURCES.tsv); all from repositories under a",
        "permissive licence. The photos themselves are public-figure / celebrity photos whose",
        "copyright stays with their authors; only many-person averages are shipped.",
        f"Files `cc0:NNN.jpg` are `{CC0_FOLDER}/NNN.jpg` of {CC0_REPO} (stock portraits the repository",
        "releases under CC0 1.0; its CREDITS.md / README list each photo's stock-site page).",
        "",
        "| file | repository | path in repository | commit | repository licence | in |",
        "|---|---|---|---|---|---|",
    ]
    users: dict[str, list[str]] = {}
    for e in entries:
        for f in e["contributors"]:
            users.setdefault(f, []).append(e["name"])
    for f in sorted(users):
        r = rows[f.partition("#")[0]]
        md.append(f"| {f} | {r['repo']} | {r['path_in_repo']} | {r['commit'][:12]} | "
                  f"{r['licence_of_repo']} | {', '.join(users[f])} |")
    (out / "SOURCES.md").write_text("\n".join(md) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
