"""``imnkit run --engine ray``: a recipe over many photos on Ray Data, on one machine or a cluster.

The driver lists the inputs with the local engine's rules (expansion, ``--shard``, mirrored folders,
skip-finished), then Ray Data reads their bytes (``read_binary_files``) and passes each photo through one
actor pool per *group* of consecutive stages on the same kind of device: CPU actors for stages on the CPU,
GPU actors (``num_gpus``) for stages on CUDA. Each actor builds a Runner once, so models load once per
actor. Between groups a photo travels as its bundle's safetensors bytes (``Bundle.to_bytes`` /
``Bundle.from_bytes``), never as a pickled object. The last group's actor writes that photo's outputs
atomically and returns its result row; the driver streams the rows into the manifest
(``imnkit-manifest.jsonl`` under the output folder) and hands them to the caller as RunResults.

Failures: an error on one input is a failed row, never a failed job. A killed actor is restarted and its
task retried by Ray (``max_restarts`` / ``max_task_retries``); outputs are renamed into place only once
complete, and the temporary files of a killed attempt are swept when the job ends.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..batch import mirror_roots, mirror_target
from ..errors import ExitCode, ImnkitError, UsageError
from ..recipe import Recipe, RunResult, output_paths

EXTRA = 'pip install "imnkit[ray]"'
MANIFEST_NAME = "imnkit-manifest.jsonl"
SKIPPED_MESSAGE = "already done (outputs exist)"
_PENDING = "pending"  # a row still travelling between actor groups
READ_CPUS = 0.25  # Ray's CPU reservation of one read task


def require_ray() -> None:
    """Raise a one-line UsageError naming the extra when Ray Data is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError(f"--engine ray needs Ray Data, which is not installed: {EXTRA}") from None


# -- planning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageGroup:
    """Consecutive recipe steps that run in one actor pool."""

    step_ids: tuple[str, ...]
    gpu: bool


def plan_groups(recipe: Recipe, *, cluster_gpus: float) -> list[StageGroup]:
    """Split the recipe into runs of consecutive steps on the same kind of device.

    A step on ``cuda``/``cuda:N`` goes to GPU actors; ``auto`` goes there too when the cluster has GPUs
    (as it would pick the GPU locally); ``cpu`` always goes to CPU actors.
    """
    groups: list[StageGroup] = []
    for step in recipe.steps:
        gpu = step.device.startswith("cuda") or (step.device == "auto" and cluster_gpus > 0)
        if groups and groups[-1].gpu == gpu:
            groups[-1] = StageGroup(groups[-1].step_ids + (step.id,), gpu)
        else:
            groups.append(StageGroup((step.id,), gpu))
    return groups


def group_recipe(recipe: Recipe, group: StageGroup, *, last: bool) -> Recipe:
    """The part of ``recipe`` one actor pool runs: its steps on its device, outputs only in the last.

    Inside a GPU actor Ray shows only the GPU(s) it was given, so ``cuda:N`` becomes ``cuda``.
    """
    device = "cuda" if group.gpu else "cpu"
    steps = [dataclasses.replace(s, device=device) for s in recipe.steps if s.id in group.step_ids]
    return dataclasses.replace(recipe, steps=steps, outputs=list(recipe.outputs) if last else [])


# -- the actors ----------------------------------------------------------------------------------
@dataclass
class GroupSpec:
    """What one actor pool needs: its part of the recipe, the run's options and where outputs go."""

    recipe: Recipe
    options: dict[str, Any]
    first: bool
    last: bool
    out_dir: Path | None
    roots: list[Path]
    overwrite: bool


def _row(path: str, status: str, *, data: bytes = b"", error: str = "", exit_code: int = ExitCode.OK,
         seconds: float = 0.0, outputs: list[str] = (), notes: list[str] = (),
         report: dict | None = None) -> dict[str, Any]:
    """One row as it travels between actor groups (flat columns that Arrow stores as they are)."""
    return {"path": path, "status": status, "data": data, "error": error, "exit_code": int(exit_code),
            "seconds": float(seconds), "outputs": json.dumps(list(outputs)), "notes": json.dumps(list(notes)),
            "report": json.dumps(report or {})}


def _error_message(err: Exception) -> str:
    """A failed row's message: an imnkit error's own one-line message and hint; for anything else only
    the exception's type (its text could hold anything, even pixel values)."""
    if isinstance(err, ImnkitError):
        return err.message + (f" ({err.hint})" if err.hint else "")
    return f"unexpected {type(err).__name__} in a Ray worker (set IMNKIT_DEBUG=1 for the traceback)"


def _exit_code(err: Exception) -> int:
    return err.exit_code if isinstance(err, ImnkitError) else ExitCode.FAILED


class GroupWorker:
    """A Ray Data callable class: builds its Runner (and so loads its models) once per actor."""

    def __init__(self, spec: GroupSpec):
        from ..memory import reuse_freed_memory
        from ..recipe import Runner

        reuse_freed_memory()  # as the imnkit command does (see imnkit.memory)
        self.spec = spec
        self.runner = Runner(spec.recipe, options=spec.options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = []
        for i in range(len(batch["path"])):
            row = {k: batch[k][i] for k in batch}
            try:
                rows.append(self.one(row))
            except Exception as err:  # a bad input is a failed row, never a failed job
                if os.environ.get("IMNKIT_DEBUG", "") not in ("", "0"):
                    raise
                rows.append(_row(str(row["path"]), "failed", error=_error_message(err), exit_code=_exit_code(err)))
        return {key: [r[key] for r in rows] for key in rows[0]} if rows else {}

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        """Run this group's stages on one row; the last group also writes the outputs."""
        from ..bundle import Bundle
        from ..recipe import bundle_from_input

        path = str(row["path"])
        inp = Path(path)
        start = time.perf_counter()
        if self.spec.first:
            before = 0.0
            try:
                bundle = bundle_from_input(inp, data=bytes(row["bytes"]))
            except ImnkitError as err:
                return _row(path, "failed", error=_error_message(err), exit_code=err.exit_code,
                            seconds=time.perf_counter() - start)
        else:
            if row["status"] != _PENDING:
                return {k: row[k] for k in ("path", "status", "data", "error", "exit_code", "seconds", "outputs", "notes",
                                            "report")}
            before = float(row["seconds"])
            bundle = Bundle.from_bytes(bytes(row["data"]), source=path)
        if self.spec.last:
            folder = mirror_target(inp, self.spec.roots, self.spec.out_dir)
            result = self.runner.run_one(inp, folder, overwrite=self.spec.overwrite, bundle=bundle)
            return _row(path, result.status, error=result.message if result.status == "failed" else "",
                        exit_code=result.exit_code, seconds=before + time.perf_counter() - start,
                        outputs=[str(p) for p in result.outputs], notes=result.notes, report=result.report)
        try:
            self.runner.process(inp, bundle=bundle)
        except ImnkitError as err:
            return _row(path, "failed", error=_error_message(err), exit_code=err.exit_code,
                        seconds=before + time.perf_counter() - start)
        return _row(path, _PENDING, data=bundle.to_bytes(), seconds=before + time.perf_counter() - start)


# -- the driver ----------------------------------------------------------------------------------
def result_row(result: RunResult) -> dict[str, Any]:
    """The manifest row of one input (what ``--json`` prints with either engine)."""
    return result.to_row()


def manifest_folder(files: list[Path], out_dir: Path | None) -> Path:
    """Where the manifest goes: the output folder, or the folder that holds every input."""
    if out_dir is not None:
        return out_dir
    return Path(os.path.commonpath([str(f.resolve().parent) for f in files]))


def connect(num_cpus: int | None = None) -> bool:
    """Join the cluster at RAY_ADDRESS, or start a local Ray; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    return True


def run_on_ray(
    recipe: Recipe,
    options: dict[str, Any],
    files: list[Path],
    items: list[str],
    out_dir: Path | None,
    *,
    overwrite: bool = False,
    on_result: Callable[[RunResult], None] | None = None,
    progress: bool = True,
    groups: list[StageGroup] | None = None,
    num_cpus: int | None = None,
) -> list[RunResult]:
    """Run ``recipe`` over ``files`` on Ray and return one RunResult per file, in the order of ``files``.

    ``items`` are the command-line inputs (their folders are mirrored below ``out_dir``); ``options`` go
    to every actor's Runner unchanged. ``groups`` overrides the split into actor pools (``plan_groups``).
    ``num_cpus`` sizes a local Ray that this call starts. Writes the manifest under ``manifest_folder``.

    Raises:
        UsageError: Ray is not installed, or a stage wants a GPU that the cluster does not have.
        ImnkitError: the Ray job itself failed (not an input: those are failed rows).
    """
    require_ray()
    import ray

    roots = mirror_roots(items)
    results: dict[str, RunResult] = {}
    todo: list[Path] = []
    for f in files:
        planned = output_paths(recipe, f, mirror_target(f, roots, out_dir), options)
        if planned and not overwrite and all(p.exists() for _, p in planned):
            results[str(f)] = RunResult(f, "skipped", outputs=[p for _, p in planned], message=SKIPPED_MESSAGE)
        else:
            todo.append(f)
    folder = manifest_folder(files, out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST_NAME
    tmp = folder / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    started = False
    try:
        with open(tmp, "w", encoding="utf-8") as fh:

            def record(result: RunResult) -> None:
                results[str(result.input)] = result
                fh.write(json.dumps(result_row(result), allow_nan=False) + "\n")
                fh.flush()
                if on_result:
                    on_result(result)

            for f in files:
                if str(f) in results:
                    record(results[str(f)])
            if todo:
                started = connect(num_cpus)
                by_path = {str(f): f for f in todo}
                dataset = _build_dataset(recipe, options, todo, roots, out_dir, overwrite, groups, progress)
                try:
                    for row in dataset.iter_rows():
                        record(_result_from_row(row, by_path))
                except ImnkitError:
                    raise
                except Exception as err:  # Ray's own failure; its text may quote rows, so only the type
                    raise ImnkitError(f"the Ray job failed ({type(err).__name__}); finished inputs are in {manifest}",
                                      hint="set IMNKIT_DEBUG=1 for Ray's traceback") from err
    finally:
        if tmp.exists():
            os.replace(tmp, manifest)
        sweep_temp_files(recipe, todo, roots, out_dir, options)
        if started:
            ray.shutdown()
    return [results[str(f)] for f in files if str(f) in results]


def _build_dataset(recipe, options, todo, roots, out_dir, overwrite, groups, progress):
    """read_binary_files -> one map_batches actor pool per stage group."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.enable_operator_progress_bars = progress
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    groups = groups or plan_groups(recipe, cluster_gpus=gpus)
    for group in groups:
        if group.gpu and gpus <= 0:
            raise UsageError(f"stage(s) {', '.join(group.step_ids)} run on CUDA, but the Ray cluster has no GPU",
                             hint="use --device cpu, or add GPU nodes to the cluster")
    # Reading bytes is I/O, not compute: a fraction of a CPU per read task. Every pool starts one actor
    # at once, so when the CPUs cannot hold one actor per CPU pool plus a read, the actors share them
    # (otherwise the pools would take every CPU and the read could never run).
    cpu_pools = sum(not g.gpu for g in groups)
    actor_cpus = 1.0 if cpus >= cpu_pools + READ_CPUS else (cpus - READ_CPUS) / max(cpu_pools, 1)
    dataset = ray.data.read_binary_files([str(f) for f in todo], include_paths=True, num_cpus=READ_CPUS)
    for i, group in enumerate(groups):
        spec = GroupSpec(recipe=group_recipe(recipe, group, last=i == len(groups) - 1), options=dict(options),
                         first=i == 0, last=i == len(groups) - 1, out_dir=out_dir, roots=roots, overwrite=overwrite)
        size = max(1, int(gpus if group.gpu else cpus // actor_cpus))
        dataset = dataset.map_batches(
            GroupWorker,
            fn_constructor_kwargs={"spec": spec},
            batch_size=1,  # one photo per task: a killed actor loses one photo's work, rows stream out
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size),
            num_cpus=0 if group.gpu else actor_cpus,
            num_gpus=1 if group.gpu else 0,
            # Fault tolerance is Ray Data's default for actor pools (max_restarts=-1, max_task_retries=-1:
            # a dead actor is restarted and its photos retried); passing them again is deprecated in 2.60.
        )
    return dataset


def _result_from_row(row: dict[str, Any], by_path: dict[str, Path]) -> RunResult:
    path = str(row["path"])
    status = str(row["status"])
    return RunResult(
        by_path.get(path, Path(path)),
        status,
        outputs=[Path(p) for p in json.loads(row["outputs"])],
        message=str(row["error"]) if status == "failed" else (SKIPPED_MESSAGE if status == "skipped" else ""),
        exit_code=int(row["exit_code"]),
        seconds=float(row["seconds"]),
        notes=list(json.loads(row["notes"])),
        report=dict(json.loads(row.get("report") or "{}")),
    )


def sweep_temp_files(recipe: Recipe, files: list[Path], roots: list[Path], out_dir: Path | None,
                     options: dict[str, Any]) -> int:
    """Remove temporary files that a killed attempt left beside the outputs of ``files``; their count.

    Writers name them ``.{output name}.{something}.tmp`` and rename them into place when complete, so
    once the job is over any such file is a dead attempt's. Each output folder is listed once.
    """
    names: dict[Path, set[str]] = {}
    for f in files:
        for _, path in output_paths(recipe, f, mirror_target(f, roots, out_dir), options):
            names.setdefault(path.parent, set()).add(path.name)
    removed = 0
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp") and name[1:-4].rsplit(".", 1)[0] in wanted:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed
