"""Average the weights of several checkpoints of one training run into one weights file.

    python scripts/average_weights.py OUT.safetensors CKPT [CKPT ...]

For runs trained without the built-in weight average (``--ema 0``, or runs older than it): single
checkpoints of the IMN swing from one to the next, and the uniform mean of late checkpoints of one
run removes that noise. Checkpoints that hold a weight average contribute it. Also used to average
the final weights of runs that started from the same weights (docs/model-card.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imnkit.train import average_weights
from imnkit.train.checkpoint import save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    parser.add_argument("--overwrite", action="store_true")
    a = parser.parse_args()
    if a.output.exists() and not a.overwrite:
        sys.exit(f"{a.output} exists (use --overwrite)")
    net = average_weights(a.inputs)
    save_weights(net, a.output, {"averaged_from": [p.name for p in a.inputs]})
    print(json.dumps({"output": str(a.output), "averaged": len(a.inputs)}))


if __name__ == "__main__":
    main()
