"""``imnkit run --engine ray``: a recipe over many photos on Ray Data, on one machine or a cluster.

The driver lists the inputs with the local engine's rules (expansion, ``--shard``, mirrored folders,
skip-finished), then Ray Data reads their bytes (``read_binary_files``) and passes each photo through one
actor pool per *group* of consecutive stages on the same kind of device: CPU actors for stages on the CPU,
GPU actors (``num_gpus``) for stages on CUDA. Each actor builds a Runner once, so models load once per
actor. Between groups a photo travels as its bundle's safetensors bytes (``Bundle.to_bytes`` /
``Bundle.from_bytes``), never as a pickled object. The last group's actor writes that photo's outputs
atomically and returns its result row; the driver streams the rows into the manifest
(``imnkit-manifest.jsonl`` under the output folder, ``imnkit-manifest.shard-i-of-N.jsonl`` with
``--shard``) and hands them to the caller as RunResults.

Inputs and outputs may be URLs (``s3://``, ``gs://``, ``file://`` ...; see ``engines.remote``): Ray reads
the inputs through their pyarrow filesystem, and the last actor uploads each output whole.

Failures: an error on one input is a failed row, never a failed job. A killed actor is restarted and its
task retried by Ray (``max_restarts`` / ``max_task_retries``); outputs are renamed into place only once
complete, and the temporary files of a killed attempt are swept when the job ends.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..batch import mirror_roots, parse_shard
from ..errors import ExitCode, ImnkitError, OutputError, UsageError
from ..recipe import Recipe, RunResult, output_paths
from ..safefile import SHAREABLE, create_temp, publish, refuse_symlink
from .remote import AnyPath, Existing, Url, mirror_target

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
    out_dir: AnyPath | None
    roots: list[AnyPath]
    overwrite: bool
    source: Url | None = None  # the inputs' filesystem when they are URLs (rows carry its paths)

    def input_of(self, path: str) -> AnyPath:
        """A row's ``path`` as the input it names: a local Path, or a Url on the inputs' filesystem."""
        return Url(self.source.scheme, path, self.source.fs) if self.source is not None else Path(path)


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
        inp = self.spec.input_of(path)
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
            if isinstance(inp, Url) or isinstance(folder, Url):
                data = bytes(row["bytes"]) if self.spec.first else None
                result = self.finish_remote(inp, folder, bundle, data)
            else:
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

    def finish_remote(self, inp: AnyPath, folder: AnyPath | None, bundle, data: bytes | None) -> RunResult:
        """``Runner.run_one`` where the input or the outputs are URLs: the same skip-finished and
        ``--overwrite`` rules, then every output written whole (``remote.write_blobs``)."""
        from ..imageio import is_image_path, read_exif
        from ..recipe import encode_outputs, write_files
        from .remote import exists, read_bytes, write_blobs

        start = time.perf_counter()
        planned = self.runner.planned_outputs(inp, folder)
        try:
            done = [exists(p) for _, p in planned]
            if planned and not self.spec.overwrite and all(done):
                return RunResult(inp, "skipped", outputs=[p for _, p in planned], message=SKIPPED_MESSAGE,
                                 seconds=time.perf_counter() - start)
            if not self.spec.overwrite and any(done):
                first = next(p for (_, p), d in zip(planned, done) if d)
                raise OutputError(f"{first}: already exists", hint="pass --overwrite to replace it")
            self.runner.process(inp, bundle=bundle)
            exif = None
            if self.runner.options.get("keep_metadata") and is_image_path(str(inp)):
                if data is None:  # a later actor group: the input's bytes stayed with the first
                    data = read_bytes(inp) if isinstance(inp, Url) else Path(inp).read_bytes()
                exif = read_exif(io.BytesIO(data))
            blobs = encode_outputs(bundle, planned, exif=exif)
            if blobs and isinstance(blobs[0][0], Url):
                written = write_blobs(blobs, inputs=(inp,))
            else:  # a URL input, local outputs (a URL can never be one of them)
                written = write_files(blobs, overwrite=self.spec.overwrite)
        except ImnkitError as err:
            return RunResult(inp, "failed", message=_error_message(err), exit_code=err.exit_code,
                             seconds=time.perf_counter() - start)
        return RunResult(inp, "ok", outputs=written, seconds=time.perf_counter() - start,
                         notes=list(bundle.meta.get("notes", [])), report=dict(bundle.meta.get("report", {})))


# -- the driver ----------------------------------------------------------------------------------
def result_row(result: RunResult) -> dict[str, Any]:
    """The manifest row of one input (what ``--json`` prints with either engine)."""
    return result.to_row()


def manifest_folder(files: list[AnyPath], out_dir: AnyPath | None) -> AnyPath:
    """Where the manifest goes: the output folder, or the folder that holds every input."""
    if out_dir is not None:
        return out_dir
    if files and isinstance(files[0], Url):
        return Url(files[0].scheme, os.path.commonpath([f.parent.path for f in files]), files[0].fs)
    return Path(os.path.commonpath([str(f.resolve().parent) for f in files]))


def manifest_name(shard: str | None = None) -> str:
    """``imnkit-manifest.jsonl``; with ``--shard i/N`` one per shard, so that shards running at the
    same time into one output folder never overwrite one another's manifest."""
    if not shard:
        return MANIFEST_NAME
    i, n = parse_shard(shard)
    return f"imnkit-manifest.shard-{i}-of-{n}.jsonl"


def input_roots(items: list[str]) -> list[AnyPath]:
    """The mirror roots of the command-line items: local folders, or URL folders/prefixes."""
    from .remote import is_folder, is_url, open_url

    roots: list[AnyPath] = list(mirror_roots([i for i in items if not is_url(i)]))
    return roots + [url for url in (open_url(i) for i in items if is_url(i)) if is_folder(url)]


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
    files: list[AnyPath],
    items: list[str],
    out_dir: AnyPath | None,
    *,
    overwrite: bool = False,
    on_result: Callable[[RunResult], None] | None = None,
    progress: bool = True,
    groups: list[StageGroup] | None = None,
    num_cpus: int | None = None,
    roots: list[AnyPath] | None = None,
    shard: str | None = None,
) -> list[RunResult]:
    """Run ``recipe`` over ``files`` on Ray and return one RunResult per file, in the order of ``files``.

    ``files`` are local Paths, or Urls all on one filesystem (``remote.expand_urls``); ``out_dir`` is a
    local folder, a Url, or None (beside each input). ``items`` are the command-line inputs (their
    folders are mirrored below ``out_dir``; ``roots`` gives those folders when already known);
    ``options`` go to every actor's Runner unchanged. ``groups`` overrides the split into actor pools
    (``plan_groups``). ``num_cpus`` sizes a local Ray that this call starts. Writes the manifest
    (``manifest_name(shard)``) under ``manifest_folder``.

    Raises:
        UsageError: Ray is not installed, or a stage wants a GPU that the cluster does not have.
        ImnkitError: the Ray job itself failed (not an input: those are failed rows).
    """
    require_ray()
    import ray

    roots = input_roots(items) if roots is None else roots
    exists = Existing()
    results: dict[str, RunResult] = {}
    todo: list[AnyPath] = []
    for f in files:
        planned = output_paths(recipe, f, mirror_target(f, roots, out_dir), options)
        if planned and not overwrite and all(exists(p) for _, p in planned):
            results[str(f)] = RunResult(f, "skipped", outputs=[p for _, p in planned], message=SKIPPED_MESSAGE)
        else:
            todo.append(f)
    folder = manifest_folder(files, out_dir)
    manifest = folder / manifest_name(shard)
    if isinstance(folder, Url):  # streamed to a local file, uploaded whole at the end
        fd, tmp_name = tempfile.mkstemp(prefix=".imnkit-manifest.", suffix=".tmp")
        tmp = Path(tmp_name)
    else:  # beside it: a random name, created exclusively (never through a link somebody made)
        refuse_symlink(manifest)  # before the job, not after it
        fd, tmp = create_temp(manifest, SHAREABLE)
    started = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:

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
                by_path = {_read_path(f): f for f in todo}
                # where URL outputs are (to read the rows' output names back): -o, or beside URL inputs
                place = out_dir if out_dir is not None else todo[0]
                place = place if isinstance(place, Url) else None
                dataset = _build_dataset(recipe, options, todo, roots, out_dir, overwrite, groups, progress)
                try:
                    for row in dataset.iter_rows():
                        record(_result_from_row(row, by_path, place))
                except ImnkitError:
                    raise
                except Exception as err:  # Ray's own failure; its text may quote rows, so only the type
                    raise ImnkitError(f"the Ray job failed ({type(err).__name__}); finished inputs are in {manifest}",
                                      hint="set IMNKIT_DEBUG=1 for Ray's traceback") from err
    finally:
        if tmp.exists():
            _publish_manifest(tmp, manifest)
        sweep_temp_files(recipe, todo, roots, out_dir, options)
        if started:
            ray.shutdown()
    return [results[str(f)] for f in files if str(f) in results]


def _read_path(f: AnyPath) -> str:
    """How Ray's read names a file in its ``path`` column: the filesystem's path of a Url."""
    return f.path if isinstance(f, Url) else str(f)


def _publish_manifest(tmp: Path, manifest: AnyPath) -> None:
    """Put the finished manifest in place: a rename locally, one whole upload to a URL."""
    if not isinstance(manifest, Url):
        try:
            publish(tmp, manifest)
        finally:
            tmp.unlink(missing_ok=True)
        return
    from .remote import write_blobs

    try:
        write_blobs([(manifest, tmp.read_bytes(), SHAREABLE)])
    finally:
        tmp.unlink(missing_ok=True)


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
    source = todo[0] if isinstance(todo[0], Url) else None
    dataset = ray.data.read_binary_files([_read_path(f) for f in todo], include_paths=True, num_cpus=READ_CPUS,
                                         filesystem=source.fs if source is not None else None)
    for i, group in enumerate(groups):
        spec = GroupSpec(recipe=group_recipe(recipe, group, last=i == len(groups) - 1), options=dict(options),
                         first=i == 0, last=i == len(groups) - 1, out_dir=out_dir, roots=roots, overwrite=overwrite,
                         source=source)
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


def _output_of(text: str, place: Url | None) -> AnyPath:
    """An output named in a row: a Url on the outputs' filesystem, or a local Path."""
    prefix = f"{place.scheme}://" if place is not None else None
    if prefix and text.startswith(prefix):
        return Url(place.scheme, text[len(prefix):], place.fs)
    return Path(text)


def _result_from_row(row: dict[str, Any], by_path: dict[str, AnyPath], place: Url | None = None) -> RunResult:
    path = str(row["path"])
    status = str(row["status"])
    inp = by_path.get(path, Path(path))
    outputs = [_output_of(p, place) for p in json.loads(row["outputs"])]
    return RunResult(
        inp,
        status,
        outputs=outputs,
        message=str(row["error"]) if status == "failed" else (SKIPPED_MESSAGE if status == "skipped" else ""),
        exit_code=int(row["exit_code"]),
        seconds=float(row["seconds"]),
        notes=list(json.loads(row["notes"])),
        report=dict(json.loads(row.get("report") or "{}")),
    )


def sweep_temp_files(recipe: Recipe, files: list[AnyPath], roots: list[AnyPath], out_dir: AnyPath | None,
                     options: dict[str, Any]) -> int:
    """Remove temporary files that a killed attempt left beside the outputs of ``files``; their count.

    Writers name them ``.{output name}.{something}.tmp`` and rename them into place when complete, so
    once the job is over any such file is a dead attempt's. Each output folder is listed once. Object
    stores have none to sweep (each output is one upload there, never a temporary object).
    """
    from .remote import delete, list_names

    names: dict[AnyPath, set[str]] = {}
    for f in files:
        for _, path in output_paths(recipe, f, mirror_target(f, roots, out_dir), options):
            if not isinstance(path, Url) or path.renames:
                names.setdefault(path.parent, set()).add(path.name)
    removed = 0
    for folder, wanted in names.items():
        if isinstance(folder, Url):
            entries = list_names(folder)
        else:
            try:
                entries = [e.name for e in os.scandir(folder)]
            except OSError:
                continue
        for name in entries:
            if name.startswith(".") and name.endswith(".tmp") and name[1:-4].rsplit(".", 1)[0] in wanted:
                if isinstance(folder, Url):
                    delete(folder / name)
                else:
                    (folder / name).unlink(missing_ok=True)
                removed += 1
    return removed
