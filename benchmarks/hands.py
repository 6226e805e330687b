#!/usr/bin/env python
"""Hands kept in front of the Mask (``imnkit.face.hands`` via ``keep_occluders``): found, kept, time.

For every photo of ``../shared/data/faces`` the faces are detected (not timed) and each natural
face gets a flat grey stand-in Mask over its polygon (jaw line and lifted brows, grown by 8 % of
the face size, as the swap paints). ``keep_occluders`` then runs with and without hands; the
pixels that differ between the two are the hand pixels put back in front of the Mask (reported
per face; on photos without a hand in front of a face they should be none). The hand search
(palm detector on the squares around the faces, landmark model per palm) is timed alone,
median of ``--repeats`` runs after one warm-up (models loaded before the first photo).

``--sheet PATH`` writes a contact sheet (photo | stand-in Mask with hands kept, points drawn)
of every photo where a hand was found or hand pixels were kept, and of hard_07.

Usage:
    PYTHONPATH=src python benchmarks/hands.py [--faces DIR] [--sheet sheet.png] [--only NAME ...] [--repeats 3]
        [--model-times] [--presence 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.face.detect import detect_faces  # noqa: E402
from imnkit.face.hands import FINGERS, LANDMARK_WEIGHTS, PALM_WEIGHTS, find_hands  # noqa: E402
from imnkit.weights import read_pinned  # noqa: E402
from imnkit.face.occlusion import hand_squares, keep_occluders  # noqa: E402
from imnkit.imageio import atomic_output, load_image  # noqa: E402


def stand_in_mask(image: np.ndarray, faces) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The photo with each face polygon painted grey, and the painted boxes (y0, x0, y1, x1)."""
    out, regions = image.copy(), []
    h, w = image.shape[:2]
    for face in faces:
        lm = np.asarray(face.landmarks, np.float64)
        size = float(np.hypot(*(lm.max(0) - lm.min(0))) / np.sqrt(2))
        top = lm[17:27] - [0, 0.06 * size]
        poly = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(poly, cv2.convexHull(np.round(np.vstack([lm[:17], top])).astype(np.int32)), 1)
        g = max(1, int(0.08 * size))
        poly = cv2.dilate(poly, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1)))
        out[poly > 0] = 128
        ys, xs = np.nonzero(poly)
        regions.append((int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1))
    return out, regions


def tile(image: np.ndarray, result: np.ndarray, hands, regions, name: str) -> np.ndarray:
    """photo | result, cropped around the faces and hands, 300 px high, points drawn on the result."""
    vis = result.copy()
    for hand in hands:
        for chain in FINGERS:
            pts = hand.points[[0, *chain]]
            for a, b in zip(pts[:-1], pts[1:]):
                cv2.line(vis, tuple(int(v) for v in a), tuple(int(v) for v in b), (0, 255, 0), 2)
    boxes = [r for r in regions] + [(int(hd.points[:, 1].min()), int(hd.points[:, 0].min()),
                                      int(hd.points[:, 1].max()), int(hd.points[:, 0].max())) for hd in hands]
    b = np.array(boxes)
    y0, x0 = np.maximum(0, b[:, :2].min(0) - 20)
    y1, x1 = b[:, 2:].max(0) + 20
    pair = np.hstack([image[y0:y1, x0:x1], vis[y0:y1, x0:x1]])
    s = 300 / pair.shape[0]
    pair = cv2.resize(pair, (max(1, int(pair.shape[1] * s)), 300), interpolation=cv2.INTER_AREA)
    cv2.putText(pair, name, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    return pair


def model_times(runs: int = 9) -> dict[str, float]:
    """Median ms of one forward pass of each hand model on a random input of its size."""
    out = {}
    for name, size in ((PALM_WEIGHTS, 192), (LANDMARK_WEIGHTS, 224)):
        net = cv2.dnn.readNetFromTFLite(np.frombuffer(read_pinned(name), np.uint8))
        x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
        times = []
        for _ in range(runs + 1):
            t = time.perf_counter()
            net.setInput(x)
            net.forward(net.getUnconnectedOutLayersNames())
            times.append(time.perf_counter() - t)
        out[f"{name}_ms"] = round(1000 * statistics.median(times[1:]), 1)
    return out


def main() -> None:
    root = Path(os.environ.get("IMNKIT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=root / "data" / "faces")
    ap.add_argument("--sheet", type=Path, help="write a contact sheet of the photos with hands here (PNG)")
    ap.add_argument("--only", nargs="*", help="only these photo names")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--presence", type=float, default=0.5,
                    help="presence a hand needs in the 'hands' column (0 lists every palm's hand; "
                         "pixels kept use the default 0.5)")
    ap.add_argument("--model-times", action="store_true", help="also time one forward pass of each model (median of 9)")
    args = ap.parse_args()
    if not args.faces.is_dir():
        raise SystemExit(f"no photos at {args.faces}; set IMNKIT_SHARED or pass --faces")
    names = args.only or sorted(p.name for p in args.faces.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    find_hands(np.zeros((64, 64, 3), np.uint8))  # load both models before timing
    if args.model_times:
        print(json.dumps(model_times()))
    rows, sheet, seconds = [], [], []
    for name in names:
        img = load_image(args.faces / name, background=(255, 255, 255))
        faces = [f for f in detect_faces(img).faces if f.treatment == "swap"]
        if not faces:
            rows.append({"photo": name, "faces": 0, "hands": [], "kept_px": [], "seconds": 0.0})
            print(f"{name:28s} faces  0", flush=True)
            continue
        squares = hand_squares(faces)
        masked, regions = stand_in_mask(img, faces)
        times, hands = [], []
        for _ in range(max(1, args.repeats)):
            t = time.perf_counter()
            hands = find_hands(img, squares, near=regions, presence_threshold=args.presence)
            times.append(time.perf_counter() - t)
        dt = statistics.median(times)
        seconds.append(dt)
        with_hands, _ = keep_occluders(img, masked, faces, regions, hands=True)
        without, _ = keep_occluders(img, masked, faces, regions, hands=False)
        diff = np.any(with_hands != without, axis=2)
        kept = [int(diff[y0:y1, x0:x1].sum()) for y0, x0, y1, x1 in regions]
        scores = [{"presence": round(h.score, 3), "palm": round(h.palm_score, 3)} for h in hands]
        rows.append({"photo": name, "faces": len(faces), "squares": len(squares), "hands": scores,
                     "kept_px": kept, "seconds": round(dt, 3)})
        print(f"{name:28s} faces {len(faces):2d} squares {len(squares):2d} hands {scores} kept_px {kept} "
              f"{1000 * dt:6.1f} ms", flush=True)
        if args.sheet and (hands or any(kept) or name.startswith("hard_07")):
            sheet.append(tile(img, with_hands, hands, regions, name))
    timed = [r for r in rows if r["faces"]]
    summary = {"photos": len(rows), "photos_with_faces": len(timed),
               "photos_with_hands": sum(1 for r in timed if r["hands"]),
               "photos_with_hand_pixels_kept": sum(1 for r in timed if any(r["kept_px"])),
               "ms_per_photo_mean": round(1000 * float(np.mean(seconds)), 1) if seconds else None,
               "ms_per_photo_median": round(1000 * float(np.median(seconds)), 1) if seconds else None,
               "ms_per_photo_max": round(1000 * float(np.max(seconds)), 1) if seconds else None}
    print(json.dumps(summary))
    if args.sheet and sheet:
        width = max(s.shape[1] for s in sheet)
        sheet = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in sheet]
        ok, png = cv2.imencode(".png", cv2.cvtColor(np.vstack(sheet), cv2.COLOR_RGB2BGR))
        with atomic_output(args.sheet, overwrite=True) as tmp:
            tmp.write_bytes(png.tobytes())


if __name__ == "__main__":
    main()
