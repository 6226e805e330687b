"""What inn's refine buys per setting, on central crops of real face regions (quick to compare).

    python benchmarks/refine_study.py --data ../shared/data/faces --cache PAIRS \
        --photos portrait_01.jpg,portrait_03.png,portrait_05.png,portrait_08.jpg \
        --configs 30:0.1:1:constant,30:0.1:1:cosine,30:0.2:1:cosine,60:0.1:1:cosine [--crop 128]

Each config is ``steps:lr:mask_weight:schedule`` (lr in 8-bit levels, i.e. lr/255 on [0, 1] pixels;
schedule constant or cosine). For each photo, the central ``crop`` square of its first swap region
is put on by the network, refined with each config (the seed extraction would use), rounded to 8
bits and put off. Prints, per config, the recovered-vs-protected and masked-vs-Mask Y-PSNR pooled
over the crops (mean squared error, then dB), their sum and the seconds per crop. The centre of a
face is its hardest part, so these figures are lower than the round trip's over whole regions
(``roundtrip.py --refine N`` measures those). Pairs come from ``roundtrip.make_pairs_swap`` (the
default recipe's swap), read from ``--cache`` when there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def central_crop(region, size: int) -> tuple[int, int, int, int]:
    y0, x0, y1, x1 = (int(v) for v in region)
    h, w = min(size, (y1 - y0) // 2 * 2), min(size, (x1 - x0) // 2 * 2)
    cy, cx = (y0 + y1) // 4 * 2, (x0 + x1) // 4 * 2
    return cy - h // 2, cx - w // 2, cy - h // 2 + h, cx - w // 2 + w


def pooled_psnr(values: list[float]) -> float:
    """dB of the mean squared error over crops of similar size (not the mean of the dB)."""
    return float(10 * np.log10(1 / np.mean([10 ** (-v / 10) for v in values])))


def parse_config(text: str) -> tuple[int, float, float, bool]:
    steps, lr, weight, schedule = text.split(":")
    if schedule not in ("constant", "cosine"):
        raise SystemExit(f"schedule must be constant or cosine, not {schedule!r}")
    return int(steps), float(lr) / 255, float(weight), schedule == "cosine"


def main() -> int:
    import roundtrip
    from imnkit.embedding import load_network, region_seed
    from imnkit.imageconv import to_float
    from imnkit.nets.imn import put_off, put_on, refine_masked
    from imnkit.train.losses import y_psnr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--photos", required=True, help="comma-separated file names in DATA")
    parser.add_argument("--configs", required=True, help="comma-separated steps:lr:mask_weight:schedule")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--weights", default="imn.default")
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args()
    configs = ["0:0:0:constant"] + args.configs.split(",")
    dev = torch.device("cpu")
    net = load_network(args.weights, dev)
    files = [args.data / name for name in args.photos.split(",")]
    rows: dict[str, list[tuple[float, float, float]]] = {c: [] for c in configs}
    for name, protected, mask, regions in roundtrip.make_pairs_swap(files, 0, args.cache):
        y0, x0, y1, x1 = central_crop(regions[0], args.crop)
        p, m = (to_float(img[y0:y1, x0:x1], dev) for img in (protected, mask))
        seed = region_seed(0, 0)
        with torch.inference_mode():
            plain = put_on(net, p, m)
            for config in configs:
                steps, lr, weight, cosine = parse_config(config)
                t0 = time.perf_counter()
                out = refine_masked(net, p, m, plain, seed, steps, lr=lr, mask_weight=weight, cosine=cosine)
                q = torch.round(out.clamp(0, 1) * 255) / 255
                rec = put_off(net, q, seed)
                rows[config].append((y_psnr(rec, p), y_psnr(q, m), time.perf_counter() - t0))
                print(f"{name:28s} {config:24s} recovered {rows[config][-1][0]:6.2f} masked {rows[config][-1][1]:6.2f}",
                      flush=True)
    print(f"\n{len(rows[configs[0]])} crops of {args.crop} px, Y-PSNR pooled over the crops:")
    for config, vals in rows.items():
        rec, msk = pooled_psnr([v[0] for v in vals]), pooled_psnr([v[1] for v in vals])
        label = "network alone" if config == configs[0] else config
        print(f"  {label:24s} recovered {rec:6.2f}  masked {msk:6.2f}  sum {rec + msk:6.2f}  "
              f"{np.mean([v[2] for v in vals]):5.1f} s/crop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
