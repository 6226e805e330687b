#!/usr/bin/env python
"""Give each composite of the built-in identity pool the eyes of one real person.

A composite's eyes are the average of 6-9 people's: their lash lines, lid creases and irises do
not line up, so they add up to painted-looking eyes (dark liner, doubled lids, grey irises) that
no sharpening can undo (issue 27). This step replaces each composite's eye region -- both eyes,
their lids up towards the brows and the skin just under them -- with that of one contributor
photo (the *eye donor*) of the same look and skin group, warped piecewise-affinely onto the
composite's own landmarks. The donor's pixels are multiplied by the ratio of the composite's colour
to the donor's, both blurred coarser than the eye, so the composite keeps its own skin colour and
shading there while the donor's sclera, iris and lids keep their contrast.

A donor is kept only when dlib still puts the new identity >= 0.6 from the donor, from every
contributor of the composite and from every other identity of the pool (a child's identity also
no nearer any child photo than before); otherwise the next donor is tried, and a composite with no
passing donor keeps its eyes (reported). Donors are ``scripts/build_identities.py``'s contributors
and more portraits of its CC0 repository (:data:`EXTRA_CC0`), chosen by eye (:data:`ALLOW`), each
used for at most two identities; ``identities.json`` and ``SOURCES.md`` record each donor.

Usage (after ``build_identities.py``; DIR: the CC0 folder named there):
    PYTHONPATH=src python scripts/identity_eyes.py --cc0 DIR --strip /tmp/eyes.png --dry-run
    PYTHONPATH=src python scripts/identity_eyes.py --cc0 DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_identities as bi  # noqa: E402

from imnkit.face.descriptors import descriptor_distance, face_descriptor  # noqa: E402
from imnkit.face.detect import detect_faces  # noqa: E402
from imnkit.face.identities import MANIFEST, skin_tone  # noqa: E402

#: donors' looks for each identity look, best first (no photos of darker-skinned children or
#: older women exist among the contributors: the nearest look of the same skin group stands in)
DONOR_LOOKS = {
    ("f", "child"): [("f", "child"), ("f", "young"), ("m", "young")],
    ("m", "child"): [("m", "child"), ("m", "young"), ("f", "young")],
    ("f", "young"): [("f", "young"), ("f", "adult")], ("m", "young"): [("m", "young"), ("m", "adult")],
    ("f", "adult"): [("f", "adult"), ("f", "young")], ("m", "adult"): [("m", "adult"), ("m", "young")],
    ("f", "senior"): [("f", "senior"), ("f", "adult"), ("f", "young")],
    ("m", "senior"): [("m", "senior"), ("m", "adult")],
}
#: each donor's eyes go to at most this many identities
MAX_USES = 2
#: the contributors whose eyes may be used, chosen by eye on their eye region warped to the canvas:
#: sharp (many of the permissive photos are degraded inputs of face-restoration test sets),
#: colour, looking ahead, open, unoccluded, without heavy liner, lashes or eye shadow (cc0:090's and
#: cc0:093's were tried and left out: blown-out sclera, a side light's glare under the eye; so was
#: train_0282's: its liner showed on a child's Mask)
ALLOW = {
    "train_0047.png", "train_0220.jpg", "train_0255.jpg", "train_0270.jpeg",
    "train_0072.jpg", "train_0082.jpg", "train_0273.jpg", "train_0288.jpg",
    "train_0073.jpg", "train_0287.jpg",
    "train_0076.jpg", "train_0078.jpg", "train_0081.jpg", "train_0153.jpg", "train_0157.jpg", "train_0192.jpg",
    "train_0193.jpg#0", "train_0193.jpg#4", "train_0268.jpg", "train_0269.jpeg", "train_0271.jpg",
    "train_0276.jpg", "train_0277.jpg", "train_0332.jpg",
    "train_0097.jpg", "train_0193.jpg#2", "train_0278.jpg",
    "cc0:025.jpg", "cc0:057.jpg", "cc0:078.jpg", "cc0:080.jpg", "cc0:088.jpg", "cc0:096.jpg",
    "cc0:006.jpg", "cc0:022.jpg", "cc0:033.jpg", "cc0:051.jpg", "cc0:066.jpg", "cc0:073.jpg", "cc0:079.jpg",
    "cc0:061.jpg", "cc0:072.jpg", "cc0:074.jpg", "cc0:087.jpg", "cc0:097.jpg", "cc0:100.jpg",
    "cc0:028.jpg",
    "cc0:001.jpg", "cc0:011.jpg", "cc0:036.jpg", "cc0:068.jpg", "cc0:076.jpg", "cc0:081.jpg", "cc0:094.jpg",
    "cc0:069.jpg", "cc0:047.jpg", "cc0:089.jpg",
}
#: permissively licensed contributors with darker skin and dark brown eyes, by eye (build_identities
#: marks only the CC0 people): their eyes suit the darker-skinned composites
DARK_PEOPLE = {"train_0157.jpg", "train_0332.jpg", "train_0278.jpg", "train_0193.jpg#4"}


#: more CC0 portraits of the same repository (build_identities.CC0_FOLDER), as eye donors only (not
#: in any composite): lighter-skinned people, near-frontal, without glasses; look by eye. The
#: builder labelled only the darker-skinned people and a few men, which left the lighter-skinned
#: young women with three usable donors.
EXTRA_CC0 = {
    "001.jpg": ("f", "young"), "007.jpg": ("f", "young"), "009.jpg": ("f", "young"), "011.jpg": ("f", "young"),
    "031.jpg": ("f", "young"), "035.jpg": ("f", "young"), "036.jpg": ("f", "young"), "059.jpg": ("f", "young"),
    "068.jpg": ("f", "young"), "076.jpg": ("f", "young"), "081.jpg": ("f", "young"), "083.jpg": ("f", "young"),
    "094.jpg": ("f", "young"), "069.jpg": ("f", "adult"),
    "040.jpg": ("m", "adult"), "047.jpg": ("m", "adult"), "089.jpg": ("m", "young"),
}


class Donor:
    """One contributor photo, read on first use: image, 68 landmarks, descriptor."""

    def __init__(self, key: str, look: tuple[str, str], dark: bool, path: Path, index: int):
        self.key, self.look, self.dark, self.path, self.index = key, look, dark, path, index
        self._face = None

    def load(self):
        if self._face is None:
            img = bi.load_rgb(self.path)
            faces = detect_faces(img, faces="all", verify_below=None).faces
            face = faces[self.index]
            self._face = (img, face.landmarks.astype(np.float64), face_descriptor(img, face))
        return self._face


def donors(train: Path, cc0: Path) -> list[Donor]:
    """Every contributor photo of ``build_identities`` as a possible donor (:data:`ALLOW` filters)."""
    out = []
    for key, look in bi.PEOPLE.items():
        file, _, k = key.partition("#")
        out.append(Donor(key, look, key in DARK_PEOPLE, train / file, int(k or 0)))
    for file, (g, a, dark) in bi.CC0_PEOPLE.items():
        out.append(Donor(f"cc0:{file}", (g, a), dark, cc0 / file, 0))
    for file, look in EXTRA_CC0.items():
        out.append(Donor(f"cc0:{file}", look, False, cc0 / file, 0))
    return out


def eye_openness(lm: np.ndarray) -> float:
    """Mean eye aspect ratio (lid gap over eye width) of both eyes."""
    def one(e):
        return (np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (2 * np.linalg.norm(e[0] - e[3]))
    return float((one(lm[36:42]) + one(lm[42:48])) / 2)


def eye_distance(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[36:42].mean(axis=0) - lm[42:48].mean(axis=0)))


def eye_alpha(lm: np.ndarray, size: int) -> np.ndarray:
    """Where the donor's eyes replace the composite's: each eye grown up to 55 % of the way to its
    brow (the lid crease), 80 % of its half-width out past the corners and its height (plus a fifth
    of its width) below, feathered inside. (size, size) float32 in 0..1."""
    mask = np.zeros((size, size), np.float32)
    for eye, brow in ((lm[36:42], lm[17:22]), (lm[42:48], lm[22:27])):
        c = eye.mean(axis=0)
        width = np.linalg.norm(eye[3] - eye[0])
        height = max(float(eye[[4, 5], 1].mean() - eye[[1, 2], 1].mean()), 0.2 * width)
        upper = eye[[1, 2]] + 0.55 * (brow[[1, 3]] - eye[[1, 2]])
        outer = [eye[0] + (eye[0] - c) * 0.8, eye[3] + (eye[3] - c) * 0.8]
        lower = eye[[4, 5]] + [0.0, 1.0 * height + 0.2 * width]
        up, down = [0.0, -0.6 * height], [0.0, 0.8 * height]  # the corners' lids, above and below
        poly = np.array([upper[0], upper[1], lower[0], lower[1]]
                        + [p + d for p in (eye[0], eye[3], outer[0], outer[1]) for d in (up, down)])
        hull = cv2.convexHull(poly.astype(np.float32)).astype(np.int32)
        cv2.fillConvexPoly(mask, hull, 1.0)
    # Feathered inside the polygon, so the lids and lashes are replaced whole (alpha 1 over the eye).
    sigma = 0.035 * eye_distance(lm)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, int(round(1.5 * sigma))))
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def with_eyes(rgb: np.ndarray, lm: np.ndarray, donor_img: np.ndarray, donor_lm: np.ndarray) -> np.ndarray:
    """The composite ``rgb`` (landmarks ``lm``) with the donor's eye region warped onto it."""
    warped = bi.warp_to(donor_img, donor_lm, lm).astype(np.float32)
    base = rgb.astype(np.float32)
    # The donor's eyes in the composite's light and colour: the donor's pixels times the ratio of
    # the two faces' colour at a scale coarser than the eye (a ratio keeps the sclera and iris
    # against the skin as the donor had them, on a lighter or darker face alike).
    sigma = 0.3 * eye_distance(lm)
    ratio = (cv2.GaussianBlur(base, (0, 0), sigma) + 8.0) / (cv2.GaussianBlur(warped, (0, 0), sigma) + 8.0)
    mixed = warped * np.clip(ratio, 0.4, 1.6)  # a dark donor on a light face: sclera not blown out
    a = eye_alpha(lm, rgb.shape[0])[..., None]
    return np.clip(np.rint(base * (1 - a) + mixed * a), 0, 255).astype(np.uint8)


def candidates(entry: dict, pool: list[Donor], uses: dict[str, int]) -> list[Donor]:
    """Donors for one identity, best first: unused, nearest look, same skin group, not among its
    contributors, eyes as open as the composite's; at the composite's resolution or finer."""
    look = (entry["gender"], entry["age"])
    dark = entry["tone"] < bi.DARK_ITA
    lm = np.asarray(entry["landmarks"], np.float64)
    mine, own = [], set(entry.get("contributors", []))
    for rank, dl in enumerate(DONOR_LOOKS[look]):
        for d in pool:
            if d.look != dl or d.dark != dark or d.key not in ALLOW or uses.get(d.key, 0) >= MAX_USES:
                continue
            img, dlm, _ = d.load()
            if eye_distance(dlm) < 0.9 * eye_distance(lm):
                continue
            # Unused donors first: two identities with one donor's eyes read nearer each other.
            score = (abs(eye_openness(dlm) - eye_openness(lm)) + (0.05 if d.key in own else 0.0) + 0.1 * rank
                     + 0.2 * uses.get(d.key, 0))
            mine.append((score, d.key, d))
    return [d for _, _, d in sorted(mine, key=lambda t: t[:2])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, default=bi.shared_dir() / "data" / "train_faces")
    ap.add_argument("--cc0", type=Path, required=True, help=f"folder of {bi.CC0_REPO}'s '{bi.CC0_FOLDER}' images")
    ap.add_argument("--out", type=Path, default=bi.REPO / "src" / "imnkit" / "data" / "identities")
    ap.add_argument("--only", nargs="*", help="only these identities")
    ap.add_argument("--strip", type=Path, help="save before/after eye crops of every identity here")
    ap.add_argument("--dry-run", action="store_true", help="write nothing into the pool")
    args = ap.parse_args()

    meta = json.loads((args.out / MANIFEST).read_text(encoding="utf-8"))
    pool = donors(args.train, args.cc0)
    by_key = {d.key: d for d in pool}
    images = {e["name"]: bi.load_rgb(args.out / e["file"]) for e in meta["identities"]}
    descs = {}
    for e in meta["identities"]:
        seen = bi.detect_built(images[e["name"]], np.asarray(e["landmarks"]))
        descs[e["name"]] = seen[1]
    descs0 = dict(descs)
    kids = [d.load()[2] for d in pool if d.look[1] == "child"]
    uses: dict[str, int] = {}
    rows, report = [], []
    for e in meta["identities"]:
        name = e["name"]
        if name == "astronaut" or (args.only and name not in args.only):
            continue
        if "eyes" in e:  # already given one person's eyes: this step runs once after the builder
            report.append(f"  {name:16s} eyes of {e['eyes']} already")
            continue
        lm = np.asarray(e["landmarks"], np.float64)
        before = images[name]
        passed = []
        for d in candidates(e, pool, uses):
            got = try_donor(e, d, before, lm, by_key, descs)
            if got is None:
                continue
            passed.append(got)
            if e["age"] != "child":
                break  # adults: the first (best-ranked) donor that passes
        if e["age"] == "child":
            # dlib tells children apart poorly, so a child's Mask reads near many a child: a donor
            # only when it leaves the identity no nearer any child photo than its own eyes did
            # (girl_2's one passing donor brought portrait_07's Mask under 0.6 from the girl).
            passed = [g for g in passed if margin(g["desc"], kids) >= margin(descs0[name], kids)]
        if not passed:
            report.append(f"  {name:16s} no donor passed: eyes kept")
            continue
        # Of the donors that pass, the one leaving the identity farthest from every child photo
        # (adults: the only one tried).
        best = max(passed, key=lambda g: margin(g["desc"], kids))
        d = best["donor"]
        uses[d.key] = uses.get(d.key, 0) + 1
        descs[name] = best["desc"]
        images[name] = best["after"]
        rows.append((e, d, best["lm"], before, best["after"]))
        report.append(f"  {name:16s} eyes of {d.key:16s} {best['from_donor']:.3f} from it, "
                      f"{best['near']:.3f} from its nearest contributor or donor, {best['others']:.3f} from the pool"
                      + (f", {margin(best['desc'], kids):.3f} from every child photo (was {margin(descs0[name], kids):.3f})"
                         if e["age"] == "child" else ""))
    print("\n".join(report))
    if args.strip and rows:
        save_strip(args.strip, rows)
    if not args.dry_run:
        write(args, meta, rows, report)


def margin(desc: np.ndarray, others: list[np.ndarray]) -> float:
    return min(descriptor_distance(desc, o) for o in others)


def try_donor(entry: dict, d: Donor, before: np.ndarray, lm: np.ndarray, by_key: dict, descs: dict) -> dict | None:
    """The composite with ``d``'s eyes, if dlib sees it and puts it >= 0.6 from the donor, from every
    contributor of the composite and from every other identity (``descs``); else None."""
    img, dlm, ddesc = d.load()
    after = with_eyes(before, lm, img, dlm)
    seen = bi.detect_built(after, lm)
    if seen is None:
        return None
    nlm, desc = seen
    members = [by_key[k].load()[2] for k in entry.get("contributors", []) if k in by_key]
    near = margin(desc, members + [ddesc])
    others = min(descriptor_distance(desc, v) for k, v in descs.items() if k != entry["name"])
    if near < 0.6 or others < 0.6:
        print(f"  {entry['name']}: {d.key} too near ({near:.3f} from a contributor or the donor, "
              f"{others:.3f} from the pool)", file=sys.stderr)
        return None
    return {"donor": d, "after": after, "lm": nlm, "desc": desc, "near": near, "others": others,
            "from_donor": descriptor_distance(desc, ddesc)}


def eye_crop(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    c, w = lm[36:48].mean(axis=0), 1.3 * np.linalg.norm(lm[36] - lm[45])
    y0, x0 = int(c[1] - 0.3 * w), int(c[0] - 0.5 * w)
    return cv2.resize(rgb[max(y0, 0):int(y0 + 0.6 * w), max(x0, 0):int(x0 + w)], (360, 216), interpolation=cv2.INTER_CUBIC)


def save_strip(path: Path, rows) -> None:
    tiles = [np.hstack([eye_crop(b, np.asarray(e["landmarks"])), eye_crop(a, np.asarray(e["landmarks"]))])
             for e, _, _, b, a in rows]
    grid = [np.hstack(tiles[i:i + 2] + [np.zeros_like(tiles[0])] * (2 - len(tiles[i:i + 2])))
            for i in range(0, len(tiles), 2)]
    Image.fromarray(np.vstack(grid)).save(path)


def write(args, meta: dict, rows, report: list[str]) -> None:
    """The new images, their landmarks, descriptors and sources into the pool (manifest last)."""
    out = args.out
    for e, d, nlm, _, after in rows:
        img = bi.flatten_background(after, nlm)
        path = out / e["file"]
        tmp = path.with_suffix(".tmp.png")
        Image.fromarray(img).save(tmp, optimize=True)
        tmp.replace(path)
        e["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        e["landmarks"] = np.round(nlm, 2).tolist()
        e["descriptor"] = bi.stored_descriptor(img, np.round(nlm, 2))
        e["tone"] = round(skin_tone(img, nlm), 1)
        e["eyes"] = d.key
        if d.key not in e["contributors"]:
            e["contributors"].append(d.key)
        e["origin"] = e["origin"].replace(" (contributors in SOURCES.md)",
                                          ", with the eye region of one person, warped onto it (contributors and eye donor in SOURCES.md)")
    save_manifest(out, meta)
    built = reports_so_far(out)
    report = [r for r in report if not r.endswith(" already")]
    licences = licence_rows(args.train)
    title = "## Eyes" if "## Eyes" not in built else "## Eyes, a later run (those left before)"
    eyes = "\n".join(["", title, "eye donor of each composite (scripts/identity_eyes.py), dlib distances after:"] + report)
    bi.write_sources(out, meta["identities"], licences, built + "\n" + eyes)


def save_manifest(out: Path, meta: dict) -> None:
    """``identities.json`` replaced whole (written beside it, then renamed)."""
    manifest = out / MANIFEST
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    tmp.replace(manifest)


def reports_so_far(out: Path) -> str:
    """The build reports in the pool's SOURCES.md (its code block), to be kept when it is rewritten."""
    return (out / "SOURCES.md").read_text(encoding="utf-8").split("```\n")[1].rstrip("\n")


def licence_rows(train: Path) -> dict[str, dict]:
    """SOURCES.md's rows for every photo a composite or an eye may come from: the training photos'
    (licences checked) and the CC0 repository's."""
    rows = bi.check_licences(train)
    for file in [*bi.CC0_PEOPLE, *EXTRA_CC0]:
        rows[f"cc0:{file}"] = {"repo": bi.CC0_REPO, "path_in_repo": f"{bi.CC0_FOLDER}/{file}",
                               "commit": bi.CC0_COMMIT, "licence_of_repo": bi.CC0_LICENCE}
    return rows


if __name__ == "__main__":
    main()
