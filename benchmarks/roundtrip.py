"""Round-trip quality, speed and the network-inverse attack of each hiding method, from the saved 8-bit PNG.

    python benchmarks/roundtrip.py --data ../shared/data/faces [--method sealed|detached|inn]
                                   [--mode swap|photos] [--weights imn.default] [--limit N] [--json OUT]

Modes (which (protected, Mask) pairs are measured):
    swap    (default) each photo with a face is the protected image; its Mask is made by the default
            recipe's align -> swap -> enhance stages, and the regions are the swapped faces. This is
            exactly what `imnkit run recipes/mask.toml` does.
    photos  consecutive photos, centre-cropped and resized to 512x512, taken as (protected, Mask);
            the region is the central 384x384 box (unrelated pairs: the hardest case).

For each pair: embed -> write PNG -> read it back -> extract, then recovered-vs-protected and
masked-vs-Mask PSNR (Y and RGB), SSIM, RMSE and MAE over the regions and over the whole image, and
the network-inverse attack (imnkit.attack: the shipped network run backwards over the masked PNG
with n = 0, no aux): attack_psnr_y over the regions, attack_identity_distance (dlib, the closest
face; < 0.6 = the same person) beside mask_identity_distance (the Mask itself, measured the same way),
and attack_faces_recovered (faces the attack brings under 0.6 and closer than the Mask). Keyed methods
add payload_bpp and codec.
inn embeds with the refine steps of recipes/mask-inn.toml unless --refine says otherwise.
Speed (inn): embed and extract of a 512x512 and a 1024x1024 portrait on this machine's CPU (model
loaded once, then timed over 3 runs; embed with the refine steps once more: embed_refined_s), and
the peak resident memory of a fresh process doing one 1024x1024 embed (refine steps included) +
extract; keyed methods: the median seconds of the 1024x1024 photos' rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

KEYS = ("psnr_y", "psnr_rgb", "ssim", "rmse", "mae")


def region_metrics(a: np.ndarray, b: np.ndarray, boxes) -> dict[str, float]:
    """Metrics over the pixels of all boxes (concatenated), and over the whole image."""
    from imnkit.metrics import compare

    whole = compare(a, b).to_dict()
    per_box = [compare(a, b, tuple(box)).to_dict() for box in boxes] or [whole]
    # Pixel-weighted mean over boxes for PSNR via MSE; plain mean for SSIM.
    weights = [max(1, (bx[2] - bx[0]) * (bx[3] - bx[1])) for bx in boxes] or [1]
    out = {}
    for k in KEYS:
        vals = [m[k] for m in per_box]
        if k.startswith("psnr"):
            mses = [255.0**2 / 10 ** (v / 10) if np.isfinite(v) else 0.0 for v in vals]
            mse = float(np.average(mses, weights=weights))
            out[f"region_{k}"] = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
        else:
            out[f"region_{k}"] = float(np.average(vals, weights=weights))
        out[f"whole_{k}"] = whole[k]
    return out


def make_pairs_swap(files, limit, cache: Path | None = None):
    """(name, protected, Mask photo, swap regions) per photo; ``cache``: a folder of ``{name}.npz`` pairs
    reused when present and written when not (the swap dominates the run: a change to the hiding
    is then measured in minutes; clear the folder when the swap or the photos change)."""
    from imnkit.recipe import Runner, load_recipe

    repo = Path(__file__).resolve().parents[1]
    recipe = load_recipe(repo / "recipes" / "mask.toml", device="cpu")
    recipe.steps = [s for s in recipe.steps if s.id in ("align", "swap", "enhance")]
    recipe.outputs = []
    runner = Runner(recipe, options={"allow_no_face": True})
    for path in files:
        if limit and limit <= 0:
            return
        cached = cache / f"{path.name}.npz" if cache is not None else None
        if cached is not None and cached.is_file():
            data = np.load(cached)
            yield path.name, data["protected"], data["mask"], [tuple(int(v) for v in r) for r in data["regions"]]
            if limit:
                limit -= 1
            continue
        try:
            bundle = runner.process(path)
        except Exception as err:  # a photo the front end rejects is reported, not fatal
            print(f"  skip {path.name}: {type(err).__name__}", file=sys.stderr)
            continue
        regions = [tuple(r) for r in bundle.tensors["swap.regions"].tolist()]
        if not regions:
            print(f"  skip {path.name}: no face", file=sys.stderr)
            continue
        if cached is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cached, protected=np.asarray(bundle.tensors["image.protected"]),
                                mask=np.asarray(bundle.tensors["mask.image"]), regions=np.array(regions))
        yield path.name, np.asarray(bundle.tensors["image.protected"]), np.asarray(bundle.tensors["mask.image"]), regions
        if limit:
            limit -= 1


def _square(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return np.asarray(Image.fromarray(img[y0 : y0 + s, x0 : x0 + s]).resize((size, size), Image.Resampling.LANCZOS))


def make_pairs_photos(files, limit):
    from imnkit.imageio import load_image

    n = 0
    for a, b in zip(files[0::2], files[1::2]):
        if limit and n >= limit:
            return
        n += 1
        yield f"{a.name}+{b.name}", _square(load_image(a), 512), _square(load_image(b), 512), [(64, 64, 448, 448)]


def round_trip(net, weights, protected, mask, regions, tmp: Path, refine: int = 0, method: str = "inn",
               masked_psnr: float = 52.0):
    """(boxes, masked as saved, recovered, embed s, extract s, payload info) of one pair."""
    from imnkit.boxes import even_box, merge_boxes
    from imnkit.embedding import put_off_regions, put_on_regions, read_aux
    from imnkit.imageio import load_image, save_png
    from imnkit.protect.keyed import hide, recover
    from imnkit.weights import weights_digest

    h, w = protected.shape[:2]
    boxes = merge_boxes([even_box(b, h, w, 8) for b in regions])
    dev = torch.device("cpu")
    t0 = time.perf_counter()
    if method == "inn":
        res = put_on_regions(net, protected, mask, boxes, seed=0, weights=weights, weights_digest=weights_digest(weights),
                             device=dev, refine=refine)
        info = {}
    else:
        res = hide(protected, mask, boxes, method=method, masked_psnr=masked_psnr)
        pixels = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
        info = {"payload_bpp": 8 * res.report["bytes"] / pixels, "codec": f"{res.report['codec']} q{res.report['quality']}",
                "faces_in_aux": int(res.report.get("in_aux", 0))}
    t_embed = time.perf_counter() - t0
    path = save_png(tmp / "masked.png", res.masked, overwrite=True)
    masked = load_image(path)  # recovery always from the saved 8-bit file
    t0 = time.perf_counter()
    if method == "inn":
        recovered = put_off_regions(net, masked, read_aux(res.aux), dev)
    else:
        recovered, _ = recover(masked, res.aux)
    t_extract = time.perf_counter() - t0
    return boxes, masked, recovered, t_embed, t_extract, info


def attack(net, protected: np.ndarray, mask: np.ndarray, masked: np.ndarray, boxes) -> dict:
    """The network-inverse attack on the masked photo: PSNR over the regions and the closest identity.

    Controls, measured the same way: the Mask photo itself (``mask_identity_distance``) and the attack
    run on the Mask photo, which hides nothing (``control_identity_distance``). dlib's distance on small
    or grey faces moves by ~0.05 with noise, so a face counts as recovered when the attack brings it
    under 0.6 *and* at least 0.1 closer than both controls (the attack on inn: 0.01-0.03).
    """
    from imnkit.attack import network_inverse
    from imnkit.face.detect import detect_faces
    from imnkit.face.report import identity_report

    faces = detect_faces(protected).faces

    def distances(image):
        return [f["distance"] for f in identity_report(protected, image, faces)]

    attacked = network_inverse(masked, net=net)
    dist, mask_dist = distances(attacked), distances(mask)
    control = distances(network_inverse(mask, net=net))
    gained = [a < 0.6 and a < min(m, c) - 0.1 for a, m, c in zip(dist, mask_dist, control)]
    return {"attack_psnr_y": region_metrics(protected, attacked, boxes)["region_psnr_y"],
            "attack_identity_distance": min(dist, default=float("nan")),
            "mask_identity_distance": min(mask_dist, default=float("nan")),
            "control_identity_distance": min(control, default=float("nan")),
            "attack_faces_recovered": int(sum(gained)), "faces": len(dist)}


def speed(weights: str, sizes=(512, 1024), repeats: int = 3, refine: int = 0) -> dict:
    """Embed/extract seconds for a face-sized region of a portrait at each size; with ``refine``,
    also one embed with that many refine steps (``embed_refined_s``)."""
    from imnkit.embedding import load_network

    net = load_network(weights, torch.device("cpu"))
    rng = np.random.default_rng(0)
    out = {}
    with tempfile.TemporaryDirectory() as d, torch.inference_mode():
        for size in sizes:
            protected = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            mask = protected.copy()
            # A portrait's face box is about half the frame (FFHQ-style 1024 portraits: ~500 px).
            s = size // 2
            region = [(size // 4, size // 4, size // 4 + s, size // 4 + s)]
            emb, ext = [], []
            for _ in range(repeats):
                _, _, _, te, tx, _ = round_trip(net, weights, protected, mask, region, Path(d))
                emb.append(te)
                ext.append(tx)
            out[str(size)] = {"embed_s": statistics.median(emb), "extract_s": statistics.median(ext), "region_px": s}
            if refine:
                out[str(size)]["embed_refined_s"] = round_trip(net, weights, protected, mask, region, Path(d), refine=refine)[3]
    return out


def own_peak_rss_mb() -> float:
    """This process's peak resident memory in MB (Linux VmHWM; elsewhere getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(weights: str, refine: int = 0) -> float:
    """Peak RSS (MB) of a fresh process doing one 1024x1024 embed (with ``refine`` steps) + extract."""
    # VmHWM, not getrusage's ru_maxrss: on Linux a child's ru_maxrss keeps the parent's RSS at fork
    # time (it read 2.5 GB here, the size of this benchmark process after the face front end).
    code = (
        "import sys; sys.path.insert(0, %r); import roundtrip; from imnkit.memory import reuse_freed_memory;"
        "reuse_freed_memory(); roundtrip.speed(%r, sizes=(1024,), repeats=1, refine=%d);"
        "print(roundtrip.own_peak_rss_mb())"
    ) % (str(Path(__file__).resolve().parent), weights, refine)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--mode", choices=("swap", "photos"), default="swap")
    parser.add_argument("--method", choices=("sealed", "detached", "inn"), default="sealed")
    parser.add_argument("--masked-psnr", type=float, default=52.0, help="sealed: the embed stage's masked_psnr (dB)")
    parser.add_argument("--no-attack", action="store_true", help="skip the network-inverse attack")
    parser.add_argument("--weights", default="imn.default")
    parser.add_argument("--limit", type=int, default=0, help="at most this many pairs (0 = all)")
    parser.add_argument("--pattern", default="*", help="glob of photos in DATA (e.g. 'portrait_*')")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--refine", type=int, default=None,
                        help="inn: the embed stage's refine steps (default: recipes/mask-inn.toml's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cache", type=Path, help="swap mode: keep each photo's (protected, Mask) pair here and reuse it")
    parser.add_argument("--keep-malloc", action="store_true", help="leave glibc malloc as it is (the library default)")
    args = parser.parse_args()
    if args.refine is None:
        args.refine = recipe_refine() if args.method == "inn" else 0
    return args


def recipe_refine() -> int:
    """The refine steps recipes/mask-inn.toml gives the embed stage: what `imnkit run` does."""
    from imnkit.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "mask-inn.toml")
    return next(int(s.params["refine"]) for s in recipe.steps if s.id == "embed")


def measure_pair(args, net, name, protected, mask, regions, tmp: Path) -> dict:
    """One pair's row: recovered and masked metrics, seconds, payload and (swap mode) the attack."""
    boxes, masked, recovered, te, tx, info = round_trip(
        net, args.weights, protected, mask, regions, tmp, refine=args.refine, method=args.method,
        masked_psnr=args.masked_psnr)
    rec = region_metrics(protected, recovered, boxes)
    msk = region_metrics(mask, masked, boxes)
    from imnkit.metrics import compare

    faces_y = [compare(protected, recovered, tuple(b)).to_dict()["psnr_y"] for b in boxes]
    row = {"pair": name, "size": list(protected.shape[:2]), "regions": [list(b) for b in boxes], "faces_y": faces_y,
           **{f"recovered_{k}": v for k, v in rec.items()}, **{f"masked_{k}": v for k, v in msk.items()},
           "embed_s": te, "extract_s": tx, **info}
    if not args.no_attack and args.mode == "swap":
        row.update(attack(net, protected, mask, masked, boxes))
    return row


def print_row(row: dict) -> None:
    extra = ""
    if "attack_psnr_y" in row:
        extra += (f" | attack Y {row['attack_psnr_y']:6.2f} id {row['attack_identity_distance']:.3f}"
                  f" (Mask {row['mask_identity_distance']:.3f}, control {row['control_identity_distance']:.3f})")
    if "payload_bpp" in row:
        extra += f" | {row['payload_bpp']:.2f} bpp {row['codec']}"
    print(f"{row['pair']:32s} recovered Y {row['recovered_region_psnr_y']:6.2f} RGB {row['recovered_region_psnr_rgb']:6.2f} "
          f"SSIM {row['recovered_region_ssim']:.4f} | masked Y {row['masked_region_psnr_y']:6.2f} "
          f"RGB {row['masked_region_psnr_rgb']:6.2f} | {row['embed_s']:.2f}s/{row['extract_s']:.2f}s{extra}", flush=True)


def summarize(rows: list[dict], args) -> dict:
    """Means over the pairs (face regions), attack counts, payload and speed."""
    def mean(key):
        vals = [r[key] for r in rows if not np.isnan(r[key])]  # inf (exact) stays inf
        return float(np.mean(vals)) if vals else float("nan")

    def finite_mean(key):  # PSNR over the pairs not recovered exactly (an exact pair's inf would swamp it)
        vals = [r[key] for r in rows if np.isfinite(r[key])]
        return float(np.mean(vals)) if vals else float("inf")

    summary = {f"recovered_{k}": (finite_mean if k.startswith("psnr") else mean)(f"recovered_region_{k}") for k in KEYS}
    faces = [y for r in rows for y in r["faces_y"]]
    summary["faces"] = len(faces)
    summary["worst_face_psnr_y"] = float(min(faces)) if faces else float("nan")
    summary["faces_under_45db_y"] = sum(y < 45 for y in faces)
    if rows and "faces_in_aux" in rows[0]:
        summary["faces_in_aux"] = sum(r["faces_in_aux"] for r in rows)
    summary.update({f"recovered_whole_{k}": finite_mean(f"recovered_whole_{k}") for k in ("psnr_y", "psnr_rgb")})
    summary.update({f"masked_{k}": (finite_mean if k.startswith("psnr") else mean)(f"masked_region_{k}")
                    for k in ("psnr_y", "psnr_rgb", "ssim")})
    summary.update({f"masked_whole_{k}": finite_mean(f"masked_whole_{k}") for k in ("psnr_y", "psnr_rgb")})
    if rows and "attack_psnr_y" in rows[0]:
        summary["attack_psnr_y"] = mean("attack_psnr_y")
        summary["attack_identity_distance"] = mean("attack_identity_distance")
        summary["attack_faces_recovered"] = sum(r["attack_faces_recovered"] for r in rows)
        summary["attack_faces_under_0.6"] = sum(r["attack_identity_distance"] < 0.6 for r in rows)
        summary["faces_measured"] = sum(r["faces"] for r in rows)
    if rows and "payload_bpp" in rows[0]:
        summary["payload_bpp"] = mean("payload_bpp")
    summary["pairs_recovered_exactly"] = sum(r["recovered_region_rmse"] == 0 for r in rows)
    if args.method != "inn" and rows:
        big = [r for r in rows if max(r["size"]) >= 1000] or rows
        summary["embed_s"] = statistics.median(r["embed_s"] for r in big)
        summary["extract_s"] = statistics.median(r["extract_s"] for r in big)
    elif not args.no_speed:
        sp = speed(args.weights, refine=args.refine)
        summary.update(embed_s=sp["1024"].get("embed_refined_s", sp["1024"]["embed_s"]), extract_s=sp["1024"]["extract_s"], speed=sp,
                       peak_rss_mb_1024=peak_memory(args.weights, args.refine))
    return summary


def main() -> int:
    args = parse_args()
    if not args.keep_malloc:
        from imnkit.memory import reuse_freed_memory

        reuse_freed_memory()  # as the imnkit command does (see imnkit.memory)

    from imnkit.embedding import load_network
    from imnkit.imageio import IMAGE_SUFFIXES

    files = sorted(p for p in args.data.glob(args.pattern) if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("noface"))
    net = load_network(args.weights, torch.device("cpu"))
    pairs = make_pairs_swap(files, args.limit, args.cache) if args.mode == "swap" else make_pairs_photos(files, args.limit)
    rows = []
    with tempfile.TemporaryDirectory() as d, torch.inference_mode():
        for name, protected, mask, regions in pairs:
            rows.append(measure_pair(args, net, name, protected, mask, regions, Path(d)))
            print_row(rows[-1])
    summary = summarize(rows, args)
    print(f"\n{len(rows)} pairs ({args.mode}, {args.method}), means over the face regions (PSNR: over the pairs not exact), from the saved 8-bit PNG:")
    for k, v in summary.items():
        print(f"  {k}: {v if isinstance(v, dict) else round(v, 4)}")
    if args.json:
        args.json.write_text(json.dumps({"mode": args.mode, "method": args.method, "weights": args.weights,
                                         "pairs": rows, "mean": summary}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
