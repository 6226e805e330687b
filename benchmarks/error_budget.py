"""Where the recovery error comes from: the 8-bit saving of the masked image, or n replacing m.

    python benchmarks/error_budget.py --faces ../shared/data/faces [--weights imn.default] [--limit 20]
                                      [--cache eval_pairs.safetensors] [--json OUT]

Extraction differs from an exact inverse in two ways: it reads the masked image as saved (8 bits,
not the network's float output) and it replaces the lost information m, which is never stored, with
n drawn from the aux seed. This script puts the network's inverse through each combination on the
realistic face-region pairs of `imnkit.train.evaluate.build_eval_pairs` (256-512 px regions of the
photos in FACES, Mask = a neighbour's face blended in) and reports the mean recovered PSNR (Y, RGB):

    float + m   the exact inverse (inf, or the float rounding of the couplings)
    float + n   as if the masked image were saved losslessly in float
    8-bit + m   as if m were known: the cost of the 8-bit rounding alone
    8-bit + n   what `imnkit extract` does
    8-bit + 0   n = 0 (the mean of n) instead of a draw
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.nets.imn import draw_aux_noise, recover_protected, secret_of
from imnkit.train.evaluate import build_eval_pairs, png_round_trip
from imnkit.train.losses import rgb_psnr, y_psnr

CASES = ("float + m", "float + n", "8-bit + m", "8-bit + n", "8-bit + 0")


@torch.no_grad()
def error_budget(net, pairs, seed: int = 1234) -> dict[str, dict[str, float]]:
    """Mean recovered Y/RGB PSNR per case over ``pairs`` (finite values only; inf if none)."""
    rows: dict[str, list[tuple[float, float]]] = {c: [] for c in CASES}
    for protected, mask in pairs:
        masked, lost = net(secret_of(net, protected, mask), mask)
        saved = png_round_trip(masked)
        n = draw_aux_noise(protected.shape, seed)
        inputs = {"float + m": (masked, lost), "float + n": (masked, n), "8-bit + m": (saved, lost),
                  "8-bit + n": (saved, n), "8-bit + 0": (saved, torch.zeros_like(n))}
        for case, (x, aux) in inputs.items():
            rec = recover_protected(net, x, aux)
            rows[case].append((y_psnr(rec, protected), rgb_psnr(rec, protected)))
    out = {}
    for case, vals in rows.items():
        mean = {}
        for i, key in enumerate(("psnr_y", "psnr_rgb")):
            finite = [v[i] for v in vals if math.isfinite(v[i])]
            mean[key] = round(sum(finite) / len(finite), 2) if finite else float("inf")
        out[case] = mean
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", default="../shared/data/faces")
    ap.add_argument("--weights", default="imn.default", help="registry name, weights file or checkpoint")
    ap.add_argument("--limit", type=int, default=20, help="number of face regions")
    ap.add_argument("--cache", default=None, help="eval-pairs file: read if present, else built and written")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    if Path(a.weights).exists():
        from imnkit.train.checkpoint import load_weights

        net = load_weights(a.weights)
    else:
        from imnkit.weights import build

        net, _ = build(a.weights, torch.device("cpu"))
    net = net.eval()
    if not Path(a.faces).is_dir() and not (a.cache and Path(a.cache).exists()):
        sys.exit(f"no face photos at {a.faces} (pass --faces DIR)")
    pairs = build_eval_pairs(a.faces, limit=a.limit, cache=a.cache)[: a.limit]  # a cache may hold more pairs
    t0 = time.perf_counter()
    res = error_budget(net, pairs)
    print(f"{len(pairs)} face regions, weights {a.weights}, {time.perf_counter() - t0:.0f} s")
    print(f"{'case':<10} {'Y-PSNR':>7} {'RGB-PSNR':>9}")
    for case, m in res.items():
        print(f"{case:<10} {m['psnr_y']:>7.2f} {m['psnr_rgb']:>9.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"weights": a.weights, "regions": len(pairs), "cases": res}, indent=1))


if __name__ == "__main__":
    main()
