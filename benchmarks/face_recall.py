#!/usr/bin/env python
"""Face recall of the default recipe against reference face boxes checked by eye.

For every photo of ``../shared/data/faces`` the recipe (``mask`` by default) runs as ``imnkit run``
would (``--allow-no-face``), and the bundle is compared with ``benchmarks/data/face_boxes.json``
(108 faces of side >= 32 px in 49 photos; none in the noface_* photos):

* recall: a reference face counts as replaced when at least half of the pixels of its central
  box (the middle half of the reference box, each way) differ between the Mask image and the
  photo, i.e. the face is covered and therefore hidden (``swap.regions`` holds those pixels);
* false positives: detected faces that overlap no reference face, and noface_* photos whose
  output differs from the input in any pixel;
* faces per treatment (``swap.treatments``: swap / warp5 / obfuscate), and seconds per photo.

Then the no-face set (``benchmarks/data/no_faces.tsv``: photos with no person that ship inside
installed packages, e.g. a motorcycle's headlights, a cat, a clock; each also scaled x2): every
detection there is a false face; reported are the false faces listed, those flagged ``review``, those
masked, and the no-face photos whose output differs from the input. Doubtful detections are flagged
``review`` on both sets (``faces.listed``). ``--set align.doubtful=mask`` gives the numbers before
doubtful detections were left to review.

``--sheet PATH`` writes a contact sheet (photo | Mask) of the photos with occluders, to look at
what was kept in front of the Mask.

Usage:
    PYTHONPATH=src python benchmarks/face_recall.py [--recipe mask] [--faces DIR] [--json out.json]
        [--stages align,swap] [--sheet sheet.png] [--only NAME ...] [--no-faces TSV | --no-faces '']
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.bundle import tensor_to_image  # noqa: E402
from imnkit.recipe import Runner, load_recipe  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "face_boxes.json"
NO_FACES = Path(__file__).resolve().parent / "data" / "no_faces.tsv"
OCCLUDED = ("hard_05_mask.png", "hard_06_occlusion.png", "hard_07_glasses_mic.png",
            "hard_08_glasses.jpg", "hard_09_glasses.png")


def _overlap(a, b) -> float:
    """Intersection over the smaller box ((y0, x0, y1, x1) boxes)."""
    iy = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ix = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def _covered(before: np.ndarray, after: np.ndarray, box) -> float:
    y0, x0, y1, x1 = box
    qy, qx = (y1 - y0) // 4, (x1 - x0) // 4
    a, b = before[y0 + qy:y1 - qy, x0 + qx:x1 - qx], after[y0 + qy:y1 - qy, x0 + qx:x1 - qx]
    return float(np.any(a != b, axis=2).mean()) if a.size else 0.0


def main() -> None:
    root = Path(os.environ.get("IMNKIT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="mask", help="recipe file or built-in name")
    ap.add_argument("--faces", type=Path, default=root / "data" / "faces")
    ap.add_argument("--stages", default="", help="run only these stages (e.g. align,swap: faster, no hiding)")
    ap.add_argument("--set", action="append", default=[], help="stage.param=value, as imnkit run --set")
    ap.add_argument("--json", type=Path, help="also write the per-photo results here")
    ap.add_argument("--sheet", type=Path, help="write a contact sheet of the occluded photos here (PNG)")
    ap.add_argument("--only", nargs="*", help="only these photo names")
    ap.add_argument("--no-faces", default=str(NO_FACES), help="the no-face set's TSV ('' to skip it)")
    args = ap.parse_args()
    if not args.faces.is_dir():
        raise SystemExit(f"no photos at {args.faces}; set IMNKIT_SHARED or pass --faces")
    ref = json.loads(DATA.read_text())["photos"]

    recipe_path = args.recipe
    if not Path(recipe_path).is_file():
        recipe_path = str(Path(__file__).resolve().parents[1] / "recipes" / f"{args.recipe}.toml")
    recipe = load_recipe(recipe_path, sets=args.set)
    if args.stages:
        keep = set(args.stages.split(","))
        recipe.steps[:] = [s for s in recipe.steps if s.stage.name in keep]
    runner = Runner(recipe, options={"allow_no_face": True})

    names = sorted(args.only or ref)
    rows, sheet = [], []
    tot_ref = tot_hit = fp_faces = fp_photos = flagged = 0
    treatments: dict[str, int] = {}
    seconds = []
    for name in names:
        path = args.faces / name
        t = time.perf_counter()
        bundle = runner.process(path)
        dt = time.perf_counter() - t
        seconds.append(dt)
        before = tensor_to_image(bundle.require("image.protected"), "image.protected")
        key = "image.masked" if "image.masked" in bundle.tensors else "mask.image"
        after = tensor_to_image(bundle.require(key), key)
        mask_img = tensor_to_image(bundle.require("mask.image"), "mask.image") if "mask.image" in bundle.tensors else after
        boxes = bundle.require("faces.boxes").tolist()
        treat = list(bundle.meta.get("swap.treatments", []))
        for tr in treat:
            treatments[tr] = treatments.get(tr, 0) + 1
        refs = ref.get(name, [])
        hits = [_covered(before, mask_img, r) >= 0.5 for r in refs]
        extra = [b for b in boxes if not any(_overlap(b, r) > 0.3 for r in refs)]
        changed = bool(np.any(before != after))
        tot_ref += len(refs)
        tot_hit += sum(hits)
        fp_faces += len(extra)
        if not refs and changed:
            fp_photos += 1
        missed = [r for r, h in zip(refs, hits) if not h]
        flagged += sum(1 for e in bundle.meta.get("faces.listed", []) if e["review"])
        row = {"photo": name, "reference": len(refs), "replaced": int(sum(hits)), "detected": len(boxes),
               "unmatched_detections": len(extra), "changed": changed, "treatments": treat,
               "occluded": bundle.meta.get("swap.occluded", []), "rotation": bundle.meta.get("faces.rotation", 0),
               "seconds": round(dt, 2), "missed_boxes": missed}
        rows.append(row)
        print(f"{name:28s} ref {len(refs):2d} replaced {sum(hits):2d} det {len(boxes):2d} extra {len(extra)} "
              f"{'changed' if changed else 'same   '} {dt:5.2f}s {','.join(treat)}", flush=True)
        if args.sheet and name in OCCLUDED:
            pair = np.hstack([before, mask_img])
            s = 400 / pair.shape[0]
            sheet.append(cv2.resize(pair, (int(pair.shape[1] * s), 400), interpolation=cv2.INTER_AREA))
    summary = {
        "recipe": args.recipe, "stages": args.stages or "all", "photos": len(names),
        "reference_faces": tot_ref, "replaced": tot_hit,
        "recall": round(tot_hit / tot_ref, 4) if tot_ref else None,
        "unmatched_detections": fp_faces, "noface_photos_changed": fp_photos,
        "treatments": treatments, "seconds_per_photo": round(float(np.mean(seconds)), 2),
        "reference_set_flagged_review": flagged,
    }
    if args.no_faces:
        print(json.dumps(summary), flush=True)  # the reference set's, before the no-face set runs
        summary.update(_no_face_set(runner, Path(args.no_faces), rows))
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "photos": rows}, indent=1))
    if args.sheet and sheet:
        width = max(s.shape[1] for s in sheet)
        sheet = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in sheet]
        cv2.imwrite(str(args.sheet), cv2.cvtColor(np.vstack(sheet), cv2.COLOR_RGB2BGR))


def _no_face_set(runner: Runner, tsv: Path, rows: list) -> dict:
    """Run the no-face photos (read from their packages); every detection is a false face."""
    import csv
    from importlib import resources

    from imnkit.bundle import Bundle
    from imnkit.imageio import load_image
    from imnkit.recipe import INPUT_IMAGE_KEY

    lines = [ln for ln in tsv.read_text().splitlines() if ln and not ln.startswith("#")]
    listed = masked = review = changed = photos = 0
    for row in csv.DictReader(lines, delimiter="\t"):
        image = load_image(Path(str(resources.files(row["package"]).joinpath(row["resource"]))))
        for step in row["transform"].split("+"):  # none, x2 (scaled twice up), flip (mirrored), or e.g. flip+x2
            if step == "x2":
                image = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
            elif step == "flip":
                image = np.ascontiguousarray(image[:, ::-1])
        name = f"{row['package']}:{row['resource']}" + ("" if row["transform"] == "none" else f" {row['transform']}")
        bundle = runner.process(Path(row["resource"]), bundle=Bundle(tensors={INPUT_IMAGE_KEY: image}, meta={"source.name": name}))
        key = "image.masked" if "image.masked" in bundle.tensors else "mask.image"
        after = tensor_to_image(bundle.require(key), key)
        entries = bundle.meta.get("faces.listed", [])
        n_masked = int(bundle.require("faces.boxes").shape[0])
        diff = bool(np.any(after != image))
        photos += 1
        listed += len(entries)
        review += sum(1 for e in entries if e["review"])
        masked += n_masked
        changed += diff
        rows.append({"photo": name, "no_face": True, "false_faces": len(entries), "masked": n_masked,
                     "review": [e["review"] for e in entries], "scores": [e["score"] for e in entries], "changed": diff})
        print(f"{name:40s} false faces {len(entries)} (review {sum(1 for e in entries if e['review'])}) "
              f"masked {n_masked} {'changed' if diff else 'same'}", flush=True)
    return {"no_face_photos": photos, "false_faces": listed, "false_faces_flagged_review": review,
            "false_faces_masked": masked, "no_face_set_photos_changed": changed}


if __name__ == "__main__":
    main()
