"""Batch throughput of the default recipe: photos per minute and peak memory, models loaded once.

    python benchmarks/throughput.py --data ../shared/data/faces [--recipe recipes/mask.toml]
                                    [--device cpu] [--limit N] [--json OUT] [--engine local|ray|both]

Runs `imnkit run`'s Runner over every photo of DATA (photos with no face pass through, as with
--allow-no-face), writing outputs to a temporary folder, and reports photos per minute, the median and
total seconds, the per-stage seconds (from the bundles' history), failures, and the process's peak RSS.

``--engine ray`` runs the same photos through `imnkit run --engine ray` (a local Ray, or the cluster at
RAY_ADDRESS); ``both`` runs the local engine and then Ray on the same folder and reports Ray's extra wall
time. Every wall time includes start-up: loading the models, and for Ray starting it and its actors.

With ``--engine ray`` DATA may be a URL (``s3://bucket/photos``, ``file:///abs/photos``): Ray then reads
the photos through that filesystem (docs/scale-out.md); the outputs still go to a local temporary folder.
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
    parser.add_argument("--data", required=True, help="a folder, or with --engine ray also a URL")
    parser.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[1] / "recipes" / "mask.toml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep-malloc", action="store_true", help="leave glibc malloc as it is (the library default)")
    parser.add_argument("--engine", choices=("local", "ray", "both"), default="local")
    args = parser.parse_args()
    if not args.keep_malloc:
        from imnkit.memory import reuse_freed_memory

        reuse_freed_memory()  # as the imnkit command does (see imnkit.memory)

    from imnkit.engines.remote import expand_urls, is_url
    from imnkit.imageio import IMAGE_SUFFIXES
    from imnkit.recipe import expand_inputs, load_recipe

    if is_url(args.data) and args.engine != "ray":
        parser.error("a URL as --data needs --engine ray")
    files = expand_urls([args.data], IMAGE_SUFFIXES)[0] if is_url(args.data) else expand_inputs([args.data])
    if args.limit:
        files = files[: args.limit]
    recipe = load_recipe(args.recipe, device=args.device)
    reports = {}
    if args.engine in ("local", "both"):
        reports["local"] = run_local(recipe, files, args)
    if args.engine in ("ray", "both"):
        reports["ray"] = run_ray(recipe, files, args)
    report = reports["local"] if args.engine == "local" else reports
    if args.engine == "both":
        report["ray_extra_wall_pct"] = 100.0 * (reports["ray"]["total_s"] / reports["local"]["total_s"] - 1.0)
        print(f"ray: {report['ray_extra_wall_pct']:+.1f} % wall time against local", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def run_local(recipe, files: list[Path], args) -> dict:
    """The local engine: one process, photos one after another."""
    from imnkit.recipe import Runner

    start = time.perf_counter()
    runner = Runner(recipe, options={"allow_no_face": True})
    per_stage: dict[str, list[float]] = defaultdict(list)
    seconds, failed = [], []
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
        "engine": "local",
        "photos": len(files),
        "ok": len(seconds),
        "failed": failed,
        "total_s": total,
        "photos_per_s": len(files) / total,
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
    return report


def run_ray(recipe, files: list[Path], args) -> dict:
    """`--engine ray`: start (or join) Ray, one actor pool per device group, outputs written by the actors."""
    from imnkit.engines.ray_engine import run_on_ray

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        results = run_on_ray(recipe, {"allow_no_face": True}, files, [str(args.data)], Path(out), overwrite=True,
                             progress=False)
    total = time.perf_counter() - start
    ok = [r for r in results if r.status == "ok"]
    report = {
        "engine": "ray",
        "photos": len(files),
        "ok": len(ok),
        "failed": [{"file": r.input.name, "message": r.message[:200]} for r in results if r.status == "failed"],
        "total_s": total,
        "photos_per_s": len(files) / total,
        "photos_per_minute": 60.0 * len(files) / total,
        "median_s": statistics.median(r.seconds for r in ok) if ok else None,
        "device": args.device,
        "recipe": str(args.recipe),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "failed"}, indent=1), flush=True)
    for f in report["failed"]:
        print(f"failed: {f['file']}: {f['message']}")
    return report


if __name__ == "__main__":
    sys.exit(main())
