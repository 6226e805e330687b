"""Speed of the keyed methods on a 1024x1024 portrait: seal, unseal, the passphrase KDF, and the CLI.

    python benchmarks/keyed_speed.py --photo ../shared/data/faces/portrait_03.png [MORE.png ...] [--repeats 3] [--json OUT]

In process (models loaded, the Mask made once by align -> swap -> enhance): median seconds of
``keyed.hide`` (seal) and ``keyed.recover`` (unseal) for sealed and detached, and of one Argon2id
derivation with the default parameters. Whole process: median wall seconds of
``imnkit run recipes/mask.toml PHOTO`` and ``imnkit extract`` (import and model loading included),
for each photo given (the in-process figures for the first), after one untimed run and with
bytecode caching on, as an installed imnkit runs. The Argon2id time is measured again at the end
(``argon2id_after_s``): this machine's speed drifts by up to ~1.7x from hour to hour.

``--recipients`` also times masking for public-key recipients: in process, ``keyed.hide`` with a
bare key against the same with one X25519 recipient (and one post-quantum), interleaved; whole
process, ``imnkit run --recipient R`` (the aux inside the PNG) and ``imnkit extract --identity FILE``.

``--baseline-src DIR`` also times the CLI with another checkout's ``src`` (e.g.
``git worktree add /tmp/old COMMIT``, then ``--baseline-src /tmp/old/src``), its runs interleaved
with this one's: the fair way to compare two versions on a machine whose speed drifts. The stages
and recipes come from this checkout in both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def mask_pair(photo: Path):
    """(protected, Mask photo, hidden boxes) of ``photo``: align -> swap -> enhance, as the recipe runs them."""
    import numpy as np

    from imnkit.boxes import even_box, merge_boxes
    from imnkit.recipe import Runner, load_recipe

    recipe = load_recipe(REPO / "recipes" / "mask.toml", device="cpu")
    recipe.steps = [s for s in recipe.steps if s.id in ("align", "swap", "enhance")]
    bundle = Runner(recipe).process(photo)
    protected, mask = np.asarray(bundle.tensors["image.protected"]), np.asarray(bundle.tensors["mask.image"])
    h, w = protected.shape[:2]
    return protected, mask, merge_boxes([even_box(tuple(b), h, w, 8) for b in bundle.tensors["swap.regions"].tolist()])


def in_process(photo: Path, repeats: int) -> dict:
    from imnkit.protect import crypto, keyed

    protected, mask, boxes = mask_pair(photo)
    out = {"size": list(protected.shape[:2]), "regions": boxes}
    for method in ("sealed", "detached"):
        seal_s, result = timed(lambda: keyed.hide(protected, mask, boxes, method=method), repeats)
        unseal_s, _ = timed(lambda: keyed.recover(result.masked, result.aux), repeats)
        out[method] = {"seal_s": round(seal_s, 3), "unseal_s": round(unseal_s, 3), "report": result.report}
    out["argon2id_s"] = kdf_seconds(repeats)
    out["argon2id"] = {k: v for k, v in crypto.KdfParams.fresh().to_dict().items() if k != "salt"}
    return out


def whole_process(photo: Path, repeats: int, baseline: Path | None = None) -> dict:
    """Whole-process seconds of ``imnkit run`` and ``imnkit extract`` on ``photo``; with ``baseline`` (the
    ``src`` folder of another checkout, e.g. a ``git worktree`` of an older commit) also of that code,
    the two runs interleaved so the machine's speed drifts alike for both."""
    imnkit = str(Path(sys.executable).with_name("imnkit"))
    # As an installed imnkit runs: its modules' bytecode cached (pip compiles it at install; this
    # sandbox sets PYTHONDONTWRITEBYTECODE=1, which costs every run ~0.13 s of compiling), after one
    # untimed run that also fills the caches (bytecode, the HOG detector's copy, the page cache).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    variants = {"this": env}
    if baseline is not None:
        variants["baseline"] = {**env, "PYTHONPATH": str(baseline.resolve())}
    times = {name: ([], []) for name in variants}
    with tempfile.TemporaryDirectory() as d:
        for i in range(-1, repeats):
            for name, venv in variants.items():
                out = Path(d) / f"{name}{i}"
                t0 = time.perf_counter()
                subprocess.run([imnkit, "run", str(REPO / "recipes" / "mask.toml"), str(photo), "-o", str(out), "-q"],
                               check=True, capture_output=True, env=venv)
                run_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                subprocess.run([imnkit, "extract", str(out / f"{photo.stem}.masked.png"), "--aux",
                                str(out / f"{photo.stem}.aux.safetensors"), "-q"], check=True, capture_output=True,
                               env=venv)
                if i >= 0:
                    times[name][0].append(run_s)
                    times[name][1].append(time.perf_counter() - t0)
    out = {name: {"run_s": [round(t, 2) for t in runs], "extract_s": [round(t, 2) for t in extracts],
                  "run_median_s": round(statistics.median(runs), 2),
                  "extract_median_s": round(statistics.median(extracts), 2)}
           for name, (runs, extracts) in times.items()}
    return out["this"] if baseline is None else out


def recipients(photo: Path, repeats: int) -> dict:
    """What sealing to recipients costs: in process (interleaved with a bare key), and the CLI."""
    from imnkit.protect import keyed
    from imnkit.protect.keys import KeySource
    from imnkit.protect.recipients import Identity, write_identity

    protected, mask, boxes = mask_pair(photo)
    made, pq = Identity.generate(), Identity.generate(pq=True)
    sources = {"bare": KeySource(), "x25519": KeySource(recipients=[made.recipient]),
               "mlkem768-x25519": KeySource(recipients=[pq.recipient])}
    times: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(max(repeats, 5)):
        for name, source in sources.items():
            t0 = time.perf_counter()
            keyed.hide(protected, mask, boxes, method="sealed", source=source)
            times[name].append(time.perf_counter() - t0)
    seal = {name: round(statistics.median(t), 4) for name, t in times.items()}
    out = {"seal_s": seal, "added_ms": {k: round(1000 * (v - seal["bare"]), 1) for k, v in seal.items() if k != "bare"}}
    # The step that differs, alone (the photo's sealing around it is the same): wrapping the key.
    from imnkit.protect.keyed import header_digest
    from imnkit.protect.keys import lock_key

    header = keyed.hide(protected, mask, boxes, method="sealed").aux.meta["aux.header"]
    key = os.urandom(32)
    out["lock_ms"] = {name: round(1000 * timed(lambda: lock_key(key, source, header_digest(header)), 200)[0], 3)
                      for name, source in sources.items()}
    imnkit = str(Path(sys.executable).with_name("imnkit"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    runs, extracts = [], []
    with tempfile.TemporaryDirectory() as d:
        write_identity(Path(d) / "id.key", made)
        for i in range(-1, repeats):
            target = Path(d) / f"r{i}"
            t0 = time.perf_counter()
            subprocess.run([imnkit, "run", "mask", str(photo), "-o", str(target), "-q", "--recipient", str(made.recipient)],
                           check=True, capture_output=True, env=env)
            t1 = time.perf_counter()
            subprocess.run([imnkit, "extract", str(target / f"{photo.stem}.masked.png"), "--identity",
                            str(Path(d) / "id.key"), "-q"], check=True, capture_output=True, env=env)
            if i >= 0:
                runs.append(t1 - t0)
                extracts.append(time.perf_counter() - t1)
    out["cli"] = {"run_median_s": round(statistics.median(runs), 2), "extract_identity_median_s":
                  round(statistics.median(extracts), 2), "extract_identity_s": [round(t, 2) for t in extracts]}
    return out


def kdf_seconds(repeats: int) -> float:
    """Median seconds of one Argon2id derivation with the default parameters (the machine's speed now)."""
    from imnkit.protect import crypto

    return round(timed(lambda: crypto.derive_key("a passphrase", crypto.KdfParams.fresh()), repeats)[0], 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, nargs="+", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--recipients", action="store_true", help="also time masking for recipients (first photo)")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="also time the CLI with this src folder first on PYTHONPATH (another checkout), interleaved")
    args = parser.parse_args()
    result = {"in_process": in_process(args.photo[0], args.repeats),
              "cli": {p.name: whole_process(p, args.repeats, args.baseline_src) for p in args.photo},
              "argon2id_after_s": kdf_seconds(args.repeats)}
    if args.recipients:
        result["recipients"] = recipients(args.photo[0], args.repeats)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
