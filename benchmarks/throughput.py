"""Batch throughput of the default recipe: photos per minute and peak memory, models loaded once.

    python benchmarks/throughput.py --data ../shared/data/faces [--recipe recipes/mask.toml]
                                    [--device cpu] [--limit N] [--json OUT]

Runs `imnkit run`'s Runner over every photo of DATA (photos with no face pass through, as with
--allow-no-face), writing outputs to a temporary folder, and reports photos per minute, the median and
total seconds, the per-stage seconds (from the bundles' history), failures, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[1] / "recipes" / "mask.toml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep-malloc", action="store_true", help="leave glibc malloc as it is (the library default)")
    args = parser.parse_args()
    if not args.keep_malloc:
        from imnkit.memory import reuse_freed_memory

        reuse_freed_memory()  # as the imnkit command does (see imnkit.memory)

    from imnkit.recipe import Runner, expand_inputs, load_recipe

    files = expand_inputs([str(args.data)])
    if args.limit:
        files = files[: args.limit]
    recipe = load_recipe(args.recipe, device=args.device)
    runner = Runner(recipe, options={"allow_no_face": True})
    per_stage: dict[str, list[float]] = defaultdict(list)
    seconds, failed = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        for path in files:
            t0 = time.perf_counter()
            try:
                bundle = runner.process(path)
            except Exception as err:  # counted, not fatal: the batch goes on
                failed.append({"file": path.name, "error": type(err).__name__, "message": str(err)[:200]})
                continue
            from imnkit.recipe import write_outputs

            write_outputs(bundle, runner.planned_outputs(path, Path(out)), path, overwrite=True)
            seconds.append(time.perf_counter() - t0)
            for h in bundle.history:
                per_stage[h["stage"]].append(h["seconds"])
            print(f"{path.name:32s} {seconds[-1]:6.2f} s", flush=True)
    total = time.perf_counter() - start
    report = {
        "photos": len(files),
        "ok": len(seconds),
        "failed": failed,
        "total_s": total,
        "photos_per_minute": 60.0 * len(files) / total,
        "median_s": statistics.median(seconds) if seconds else None,
        "stage_mean_s": {k: statistics.mean(v) for k, v in per_stage.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": args.device,
        "recipe": str(args.recipe),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "failed"}, indent=1))
    for f in failed:
        print(f"failed: {f['file']}: {f['message']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
