"""What inn's refine buys per setting, on central crops of real face regions (quick to compare).

    python benchmarks/refine_study.py --data ../shared/data/faces --cache PAIRS \
        --photos portrait_01.jpg,portrait_03.png,portrait_05.png,portrait_08.jpg \
        --configs 30:0.1:1:constant,30:0.1:1:cosine,30:0.1:1:cosine:0.25 [--crop 128]
    python benchmarks/refine_study.py --train-pairs PAIRS.safetensors --count 12 --configs ...

Each config is ``steps:lr:mask_weight:schedule[:chroma]`` (lr in 8-bit levels, i.e. lr/255 on
[0, 1] pixels; schedule constant or cosine; chroma: refine_masked's chroma_weight, none = plain RGB
error). For each photo, the central ``crop`` square of its first swap region is put on by the
network, refined with each config (the seed extraction would use), rounded to 8 bits and put off.
Prints, per config, the recovered-vs-protected and masked-vs-Mask PSNR (Y and RGB) pooled over the
crops (mean squared error, then dB), the sum of the two Y figures and the seconds per crop. The
centre of a face is its hardest part, so these figures are lower than the round trip's over whole
regions (``roundtrip.py --refine N`` measures those). Pairs: measurement photos through
``roundtrip.make_pairs_swap`` (the default recipe's swap, read from ``--cache`` when there), or
the first ``--count`` single-face pairs of 256 px or more of a training-pairs cache
(``imnkit train --pairs-cache``), to choose settings without the measurement photos.
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


def parse_config(text: str) -> tuple[int, float, float, bool, float | None]:
    steps, lr, weight, schedule, *chroma = text.split(":")
    if schedule not in ("constant", "cosine"):
        raise SystemExit(f"schedule must be constant or cosine, not {schedule!r}")
    return int(steps), float(lr) / 255, float(weight), schedule == "cosine", float(chroma[0]) if chroma else None


def training_pairs(path: Path, count: int):
    """(name, protected, Mask, regions) of the first ``count`` single-face pairs of 256 px or more."""
    from imnkit.train.swap_pairs import SwapPairs

    found = 0
    for i, (prot, mask, boxes) in enumerate(SwapPairs.load(path).pairs):
        y0, x0, y1, x1 = boxes[0]
        if len(boxes) == 1 and min(y1 - y0, x1 - x0) >= 256 and found < count:
            found += 1
            yield f"train pair {i}", prot.permute(1, 2, 0).numpy(), mask.permute(1, 2, 0).numpy(), boxes


def main() -> int:
    import roundtrip
    from imnkit.embedding import load_network, region_seed
    from imnkit.imageconv import to_float
    from imnkit.nets.imn import put_off, put_on, refine_masked
    from imnkit.train.losses import rgb_psnr, y_psnr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--photos", help="comma-separated file names in DATA")
    parser.add_argument("--train-pairs", type=Path, help="a training-pairs cache instead of DATA")
    parser.add_argument("--count", type=int, default=12, help="with --train-pairs: how many pairs")
    parser.add_argument("--configs", required=True, help="comma-separated steps:lr:mask_weight:schedule")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--weights", default="imn.default")
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args()
    configs = ["0:0:0:constant"] + args.configs.split(",")
    dev = torch.device("cpu")
    net = load_network(args.weights, dev)
    if args.train_pairs is not None:
        pairs = training_pairs(args.train_pairs, args.count)
    elif args.data is not None and args.photos:
        pairs = roundtrip.make_pairs_swap([args.data / name for name in args.photos.split(",")], 0, args.cache)
    else:
        raise SystemExit("give --data and --photos, or --train-pairs")
    rows: dict[str, list[tuple[float, ...]]] = {c: [] for c in configs}
    for name, protected, mask, regions in pairs:
        y0, x0, y1, x1 = central_crop(regions[0], args.crop)
        p, m = (to_float(img[y0:y1, x0:x1], dev) for img in (protected, mask))
        seed = region_seed(0, 0)
        with torch.inference_mode():
            plain = put_on(net, p, m)
            for config in configs:
                steps, lr, weight, cosine, chroma = parse_config(config)
                t0 = time.perf_counter()
                out = refine_masked(net, p, m, plain, seed, steps, lr=lr, mask_weight=weight, cosine=cosine,
                                    chroma_weight=chroma)
                q = torch.round(out.clamp(0, 1) * 255) / 255
                rec = put_off(net, q, seed)
                rows[config].append((y_psnr(rec, p), rgb_psnr(rec, p), y_psnr(q, m), rgb_psnr(q, m),
                                     time.perf_counter() - t0))
                print(f"{name:28s} {config:24s} recovered {rows[config][-1][0]:6.2f} masked {rows[config][-1][2]:6.2f}",
                      flush=True)
    print(f"\n{len(rows[configs[0]])} crops of {args.crop} px, PSNR (Y / RGB) pooled over the crops:")
    for config, vals in rows.items():
        rec_y, rec_rgb, msk_y, msk_rgb = (pooled_psnr([v[k] for v in vals]) for k in range(4))
        label = "network alone" if config == configs[0] else config
        print(f"  {label:26s} recovered {rec_y:6.2f} / {rec_rgb:6.2f}  masked {msk_y:6.2f} / {msk_rgb:6.2f}  "
              f"sum Y {rec_y + msk_y:6.2f}  {np.mean([v[4] for v in vals]):5.1f} s/crop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
