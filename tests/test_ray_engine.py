"""`imnkit run --engine ray`: planning (always), and a local Ray on real photos (slow, needs imnkit[ray])."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imnkit.bundle import load_bundle
from imnkit.cli import app
from imnkit.engines.ray_engine import MANIFEST_NAME, StageGroup, group_recipe, plan_groups, sweep_temp_files
from imnkit.errors import ExitCode
from imnkit.imageio import load_image
from imnkit.recipe import Runner, expand_inputs, load_recipe

REPO = Path(__file__).resolve().parents[1]
MASK_RECIPE = REPO / "recipes" / "mask.toml"
FACES = ("portrait_14_aligned224.jpg", "portrait_17_aligned512.png", "multi_09.jpg")
NO_FACE = "noface_06.jpg"
MORE_FACES = ("portrait_02.png", "portrait_12_gray.png", "multi_03.jpg")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def options(**over):
    base = {"save_mask": True, "preview": False, "allow_no_face": False, "keep_bundles": False,
            "keep_metadata": False, "seed": None}
    return {**base, **over}


# -- no Ray needed ---------------------------------------------------------------------------------
def test_engine_ray_without_ray_is_a_one_line_usage_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    r = invoke("run", "mask", REPO / "examples" / "astronaut.jpg", "--engine", "ray")
    assert r.exit_code == ExitCode.USAGE
    assert 'pip install "imnkit[ray]"' in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unknown_engine_is_a_usage_error():
    r = invoke("run", "mask", REPO / "examples" / "astronaut.jpg", "--engine", "spark")
    assert r.exit_code == ExitCode.USAGE and "--engine must be local or ray" in r.stderr


def test_plan_puts_cpu_stages_on_cpu_actors_and_the_rest_on_gpus_when_there_are_some():
    recipe = load_recipe(REPO / "recipes" / "mask-inn.toml")
    assert plan_groups(recipe, cluster_gpus=0) == [
        StageGroup(("align", "swap", "enhance", "dwt", "embed", "preview"), gpu=False)]
    groups = plan_groups(recipe, cluster_gpus=2)
    assert groups == [StageGroup(("align", "swap", "enhance"), gpu=False),
                      StageGroup(("dwt", "embed", "preview"), gpu=True)]
    first, last = group_recipe(recipe, groups[0], last=False), group_recipe(recipe, groups[1], last=True)
    assert [s.device for s in first.steps] == ["cpu"] * 3 and not first.outputs
    assert [s.device for s in last.steps] == ["cuda"] * 3 and last.outputs == recipe.outputs
    # An explicit device wins over the cluster's: all on cuda is one GPU group, all on cpu one CPU group.
    assert plan_groups(load_recipe(MASK_RECIPE, device="cuda:1"), cluster_gpus=0)[0].gpu
    assert not plan_groups(load_recipe(MASK_RECIPE, device="cpu"), cluster_gpus=4)[0].gpu


def test_sweep_removes_only_the_temporary_files_of_planned_outputs(tmp_path):
    recipe = load_recipe(MASK_RECIPE)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".a.masked.png.4242.tmp", out / ".a.aux.safetensors.abc123.tmp"]
    kept = [out / "a.masked.png", out / ".b.masked.png.1.tmp", out / "notes.tmp"]
    for p in stale + kept:
        p.write_bytes(b"partial")
    assert sweep_temp_files(recipe, [photo], [], out, options()) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    # The same on a file:// output location (a filesystem with rename, reached through pyarrow).
    pytest.importorskip("pyarrow.fs")
    from imnkit.engines.remote import open_url

    for p in stale:
        p.write_bytes(b"partial")
    assert sweep_temp_files(recipe, [photo], [], open_url(f"file://{out}"), options()) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


# -- a local Ray on real photos --------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install \"imnkit[ray]\")")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install \"imnkit[ray]\")")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def photos(tmp_path, faces_dir) -> Path:
    """A folder of three face photos, a photo with no face and a truncated JPEG, in a sub-folder."""
    folder = tmp_path / "in" / "sub"
    folder.mkdir(parents=True)
    for name in FACES + (NO_FACE,):
        shutil.copy(faces_dir / name, folder / name)
    (folder / "broken.jpg").write_bytes((faces_dir / FACES[0]).read_bytes()[:2000])
    return tmp_path / "in"


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_ray_run_matches_the_local_engine_and_reports_every_input(local_ray, photos, tmp_path):
    out = tmp_path / "out"
    r = invoke("run", MASK_RECIPE, photos, "-o", out, "--save-mask", "--engine", "ray", "--json")
    assert r.exit_code == ExitCode.FAILED, r.stderr  # some inputs failed, the job did not
    printed = [json.loads(line) for line in r.stdout.splitlines()]
    manifest = rows_of(out / MANIFEST_NAME)
    assert sorted(printed, key=lambda row: row["path"]) == sorted(manifest, key=lambda row: row["path"])
    by_name = {Path(row["path"]).name: row for row in manifest}
    assert set(by_name) == set(FACES) | {NO_FACE, "broken.jpg"}
    assert by_name["broken.jpg"]["status"] == "failed" and "truncated or corrupt" in by_name["broken.jpg"]["error"]
    assert by_name[NO_FACE]["status"] == "failed" and by_name[NO_FACE]["exit_code"] == ExitCode.NO_FACE
    # The same Mask photos as the local engine, byte for byte, in the mirrored sub-folder.
    runner = Runner(load_recipe(MASK_RECIPE), options=options())
    for name in FACES:
        row = by_name[name]
        assert row["status"] == "ok" and row["error"] is None and row["seconds"] > 0
        stem = Path(name).stem
        assert sorted(Path(p).name for p in row["outputs"]) == sorted(
            f"{stem}.{s}" for s in ("masked.png", "aux.safetensors", "mask.png"))
        local = runner.run_one(photos / "sub" / name, tmp_path / "local")
        assert local.status == "ok"
        assert (out / "sub" / f"{stem}.mask.png").read_bytes() == (tmp_path / "local" / f"{stem}.mask.png").read_bytes()
    # Both engines' masked photos recover to the same pixels.
    stem = Path(FACES[0]).stem
    recovered = {}
    for folder in (out / "sub", tmp_path / "local"):
        res = invoke("extract", folder / f"{stem}.masked.png", "--aux", folder / f"{stem}.aux.safetensors",
                     "--device", "cpu", "-q")
        assert res.exit_code == 0, res.stderr
        recovered[folder] = load_image(folder / f"{stem}.recovered.png")
    assert (recovered[out / "sub"] == recovered[tmp_path / "local"]).all()
    # A second run skips what is done and tries the failed inputs again.
    r = invoke("run", MASK_RECIPE, photos, "-o", out, "--save-mask", "--engine", "ray", "--json")
    again = {Path(row["path"]).name: row["status"] for row in map(json.loads, r.stdout.splitlines())}
    assert again == {**{n: "skipped" for n in FACES}, NO_FACE: "failed", "broken.jpg": "failed"}


@pytest.mark.slow
def test_bundles_travel_between_actor_pools_as_bytes(local_ray, photos, tmp_path):
    """Two CPU pools stand in for the CPU -> GPU split of a GPU cluster: same Mask photo, same rows."""
    from imnkit.engines.ray_engine import run_on_ray

    recipe = load_recipe(MASK_RECIPE)
    groups = [StageGroup(("align", "swap", "enhance"), gpu=False), StageGroup(("dwt", "embed", "preview"), gpu=False)]
    files = [photos / "sub" / FACES[0], photos / "sub" / "broken.jpg"]
    results = run_on_ray(recipe, options(), files, [str(photos)], tmp_path / "two", groups=groups, progress=False)
    assert [(r.input, r.status) for r in results] == [(files[0], "ok"), (files[1], "failed")]
    Runner(recipe, options=options()).run_one(files[0], tmp_path / "local")
    stem = Path(FACES[0]).stem
    assert (tmp_path / "two" / "sub" / f"{stem}.mask.png").read_bytes() == (tmp_path / "local" / f"{stem}.mask.png").read_bytes()


def _descendants_named(root_pid: int, marker: str) -> list[int]:
    """Pids below ``root_pid`` (this test's own Ray) whose command line contains ``marker``."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = []
    for pid in parents:
        p, seen = pid, 0
        while p in parents and p != root_pid and seen < 50:
            p, seen = parents[p], seen + 1
        if p == root_pid:
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    found.append(pid)
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_an_actor_killed_mid_run_loses_nothing_and_leaves_no_partial_file(local_ray, photos, tmp_path, faces_dir):
    from imnkit.engines.ray_engine import run_on_ray

    for name in MORE_FACES:  # enough photos that some are still running after the first is done
        shutil.copy(faces_dir / name, photos / "sub" / name)
    recipe = load_recipe(MASK_RECIPE)
    files = [f for f in expand_inputs([str(photos)]) if f.name in FACES + MORE_FACES]
    out = tmp_path / "out"
    done: list = []
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(
        run_on_ray(recipe, options(), files, [str(photos)], out, on_result=done.append, progress=False)))
    worker.start()
    killed = None
    deadline = time.monotonic() + 240
    while worker.is_alive() and killed is None and time.monotonic() < deadline:
        busy = _descendants_named(os.getpid(), "GroupWorker")
        if busy and 1 <= len(done) < len(files):  # the actors are warm and photos are still in flight
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    worker.join(timeout=300)
    assert killed is not None, "no actor was caught mid-run"
    assert not worker.is_alive()
    # A photo whose outputs were renamed into place just before the kill is "skipped" on the retry.
    assert sorted(r.input.name for r in results) == sorted(f.name for f in files)
    assert all(r.status in ("ok", "skipped") for r in results), [(r.input.name, r.status, r.message) for r in results]
    rows = rows_of(out / MANIFEST_NAME)
    assert sorted(Path(row["path"]).name for row in rows) == sorted(f.name for f in files)  # each once
    for f in files:
        stem = f.stem
        assert load_image(out / "sub" / f"{stem}.mask.png").ndim == 3  # whole PNGs that decode
        assert load_image(out / "sub" / f"{stem}.masked.png").ndim == 3
        assert load_bundle(out / "sub" / f"{stem}.aux.safetensors").tensors  # a whole bundle that loads
    leftovers = [p.name for p in (out / "sub").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


# -- URLs: a real S3 API (moto) and file:// through pyarrow ------------------------------------------
@pytest.mark.slow
def test_ray_reads_and_writes_s3_with_one_manifest_per_shard(local_ray, s3_server, faces_dir, tmp_path):
    from imnkit.batch import select_shard
    from imnkit.bundle import Bundle

    bucket = s3_server.bucket("photos")
    face, stem = FACES[0], Path(FACES[0]).stem
    s3_server.put(bucket, f"in/sub/{face}", (faces_dir / face).read_bytes())
    s3_server.put(bucket, "in/sub/broken.jpg", (faces_dir / face).read_bytes()[:2000])
    s3_server.put(bucket, "in/sub/notes.txt", b"not a photo")  # the folder listing keeps images only
    names = [f"s3://{bucket}/in/sub/{n}" for n in ("broken.jpg", face)]
    shards = [select_shard(names, f"{i}/2") for i in (0, 1)]
    assert all(shards), "the fixed names must land in both shards"
    rows = []
    for i in (0, 1):
        r = invoke("run", MASK_RECIPE, s3_server.url(bucket, "in"), "-o", s3_server.url(bucket, "out"), "--save-mask",
                   "--engine", "ray", "--json", "--shard", f"{i}/2")
        manifest = s3_server.get(bucket, f"out/imnkit-manifest.shard-{i}-of-2.jsonl").decode()
        assert "testing:testing" not in r.stdout + manifest and "endpoint_override" not in r.stdout + manifest
        shard_rows = [json.loads(line) for line in manifest.splitlines()]
        assert sorted(json.loads(line)["path"] for line in r.stdout.splitlines()) == sorted(
            row["path"] for row in shard_rows) == sorted(shards[i])
        assert r.exit_code == (ExitCode.FAILED if f"s3://{bucket}/in/sub/broken.jpg" in shards[i] else ExitCode.OK)
        rows += shard_rows
    by_name = {Path(row["path"]).name: row for row in rows}
    assert by_name["broken.jpg"]["status"] == "failed" and "truncated or corrupt" in by_name["broken.jpg"]["error"]
    assert by_name[face]["status"] == "ok"
    outputs = [f"out/sub/{stem}.{s}" for s in ("masked.png", "aux.safetensors", "mask.png")]
    assert sorted(by_name[face]["outputs"]) == sorted(f"s3://{bucket}/{k}" for k in outputs)
    # Whole objects only: the outputs and the two manifests, no temporary object.
    assert s3_server.keys(bucket, "out/") == sorted(
        outputs + ["out/imnkit-manifest.shard-0-of-2.jsonl", "out/imnkit-manifest.shard-1-of-2.jsonl"])
    assert Bundle.from_bytes(s3_server.get(bucket, f"out/sub/{stem}.aux.safetensors")).tensors
    # An S3 input written to a local folder: the same Mask photo as the local engine's, byte for byte.
    r = invoke("run", MASK_RECIPE, s3_server.url(bucket, f"in/sub/{face}"), "-o", tmp_path / "from-s3", "--save-mask",
               "--engine", "ray", "--json")
    assert r.exit_code == 0, r.stderr
    local = tmp_path / "local"
    (local / face).parent.mkdir(parents=True)
    (local / face).write_bytes((faces_dir / face).read_bytes())
    assert Runner(load_recipe(MASK_RECIPE), options=options()).run_one(local / face, local).status == "ok"
    mask = (local / f"{stem}.mask.png").read_bytes()
    assert (tmp_path / "from-s3" / f"{stem}.mask.png").read_bytes() == mask
    assert s3_server.get(bucket, f"out/sub/{stem}.mask.png") == mask
    # Skip-finished on S3: everything exists, so no Ray job starts.
    r = invoke("run", MASK_RECIPE, s3_server.url(bucket, f"in/sub/{face}"), "-o", s3_server.url(bucket, "out/sub"),
               "--save-mask", "--engine", "ray", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "skipped"


@pytest.mark.slow
def test_file_url_outputs_follow_the_overwrite_rules_and_are_whole_and_private(local_ray, faces_dir, tmp_path):
    inp = tmp_path / "in" / "sub"
    inp.mkdir(parents=True)
    shutil.copy(faces_dir / FACES[0], inp / FACES[0])
    stem = Path(FACES[0]).stem
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / f"{stem}.masked.png").write_bytes(b"stale")  # one output of two exists
    args = ("run", MASK_RECIPE, tmp_path / "in", "-o", f"file://{out}", "--engine", "ray", "--json")
    r = invoke(*args)
    row = json.loads(r.stdout)
    assert r.exit_code == ExitCode.FAILED and row["status"] == "failed" and "already exists" in row["error"]
    assert (out / "sub" / f"{stem}.masked.png").read_bytes() == b"stale"
    r = invoke(*args, "--overwrite")
    row = json.loads(r.stdout)
    assert r.exit_code == 0 and row["status"] == "ok", r.stderr
    assert row["outputs"] == [f"file://{out}/sub/{stem}.masked.png", f"file://{out}/sub/{stem}.aux.safetensors"]
    assert load_image(out / "sub" / f"{stem}.masked.png").ndim == 3
    assert load_bundle(out / "sub" / f"{stem}.aux.safetensors").tensors
    assert (out / "sub" / f"{stem}.aux.safetensors").stat().st_mode & 0o077 == 0  # the aux: owner only
    assert rows_of(out / MANIFEST_NAME) == [row]
    assert [p.name for p in out.rglob("*") if p.name.endswith(".tmp")] == []


@pytest.mark.slow
def test_the_last_actor_writes_a_url_input_to_a_file_url_with_its_exif_and_skips_it_when_done(faces_dir, tmp_path):
    """GroupWorker in this process (no Ray needed): a URL input's bytes, --keep-metadata, skip-finished."""
    pytest.importorskip("pyarrow.fs")
    from PIL import Image

    from imnkit.engines.ray_engine import GroupSpec, GroupWorker
    from imnkit.engines.remote import open_url

    photo = tmp_path / "in" / FACES[0]
    photo.parent.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    with Image.open(faces_dir / FACES[0]) as img:
        img.save(photo, exif=exif.tobytes())
    src, out = open_url(f"file://{photo}"), open_url(f"file://{tmp_path}/out")
    recipe = load_recipe(MASK_RECIPE)
    spec = GroupSpec(recipe=recipe, options=options(keep_metadata=True), first=True, last=True, out_dir=out,
                     roots=[], overwrite=False, source=src)
    worker = GroupWorker(spec)
    row = {"path": src.path, "bytes": photo.read_bytes()}
    done = worker.one(row)
    assert done["status"] == "ok", done["error"]
    stem = photo.stem
    assert json.loads(done["outputs"]) == [f"file://{tmp_path}/out/{stem}.{s}"
                                           for s in ("masked.png", "aux.safetensors", "mask.png")]
    with Image.open(tmp_path / "out" / f"{stem}.masked.png") as masked:
        assert masked.getexif()[0x010F] == "CameraMaker"
    again = worker.one(row)
    assert again["status"] == "skipped" and again["outputs"] == done["outputs"]
