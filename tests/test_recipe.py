import json
import textwrap

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imnkit import stage as stage_mod
from imnkit.bundle import load_bundle
from imnkit.cli import app
from imnkit.errors import DeviceError, UsageError
from imnkit.recipe import Runner, expand_inputs, load_recipe, recipe_from_dict
from imnkit.stage import Param, Stage, get_stage

RECIPE = """
[recipe]
name = "coeffs"
[[stage]]
name = "dwt"
device = "cpu"
params = { keys = "image.protected" }
[[output]]
path = "{stem}.coeffs.safetensors"
bundle = "dwt."
[[output]]
path = "{stem}.copy.png"
image = "image.protected"
when = "save_mask"
"""


@pytest.fixture
def recipe_file(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text(RECIPE)
    return p


@pytest.fixture
def photos(tmp_path, photo):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    paths = [folder / "a.png", folder / "sub" / "b.jpg"]
    Image.fromarray(photo).save(paths[0])
    Image.fromarray(photo[:64, :64]).save(paths[1])
    return folder, paths


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_params_are_typed_and_validated():
    st = get_stage("dwt")
    assert st.resolve_params({"inverse": "true"})["inverse"] is True
    with pytest.raises(UsageError, match="unknown parameter.*bogus.*known: inverse, keys, odd"):
        st.resolve_params({"bogus": 1})
    with pytest.raises(UsageError, match="'odd' must be one of error, pad"):
        st.resolve_params({"odd": "crop"})
    with pytest.raises(UsageError, match="'inverse' must be true or false"):
        st.resolve_params({"inverse": 3})
    p = Param("n", int, 1, "n", min=1, max=4)
    with pytest.raises(UsageError, match=">= 1"):
        p.coerce(0, where="x")
    with pytest.raises(UsageError, match="must be int"):
        p.coerce("two", where="x")
    assert Param("f", float, 1.0, "f").coerce("2.5", where="x") == 2.5


def test_recipe_validation_errors(tmp_path):
    def bad(text, match):
        p = tmp_path / "bad.toml"
        p.write_text(textwrap.dedent(text))
        with pytest.raises(UsageError, match=match):
            load_recipe(p)

    bad("[[stage]]\nname = 'nope'\n", "unknown stage 'nope'")
    bad("[[stage]]\nname = 'dwt'\nparams = { keyz = 'a' }\n", "unknown parameter.*keyz")
    bad("[[stage]]\nname = 'dwt'\nparams = { inverse = 'maybe' }\n", "true or false")
    bad("[[stage]]\nname = 'dwt'\nparams = { inverse = true }\n", "needs dwt.image.protected.*neither the input")
    bad("[[stage]]\nname = 'dwt'\ncolour = 1\n", "unknown key.*colour")
    bad("[frobnicate]\n[[stage]]\nname = 'dwt'\n", "unknown section.*frobnicate")
    bad("[[stage]]\nname = 'dwt'\n[[output]]\npath = '{stem}.png'\nimage = 'mask.image'\n", "no stage provides")
    bad("[[stage]]\nname = 'dwt'\n[[output]]\npath = '{nose}.png'\nimage = 'image.protected'\n", "unknown placeholder")
    bad("[[stage]]\nname = 'dwt'\ndevice = 'gpu'\n", "unknown device 'gpu'")
    bad("this is = not toml [", "not valid TOML")
    with pytest.raises(UsageError, match="no such file"):
        load_recipe(tmp_path / "absent.toml")


def test_set_overrides_and_unknown_stage_in_set(recipe_file):
    r = load_recipe(recipe_file, sets=["dwt.odd=pad"])
    assert r.steps[0].params["odd"] == "pad"
    with pytest.raises(UsageError, match="not in the recipe: swap"):
        load_recipe(recipe_file, sets=["swap.seed=1"])
    with pytest.raises(UsageError, match="stage.param=value"):
        load_recipe(recipe_file, sets=["odd=pad"])


def test_unavailable_device_fails_before_work(recipe_file, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = load_recipe(recipe_file, device="cuda:1")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        Runner(r)


def test_run_writes_outputs_and_history(recipe_file, photos, tmp_path):
    folder, paths = photos
    out = tmp_path / "out"
    result = invoke("run", recipe_file, folder, "-o", out, "--save-mask", "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["status"] for line in lines] == ["ok", "ok"]
    # Folder structure is mirrored below --out-dir.
    b = load_bundle(out / "sub" / "b.coeffs.safetensors")
    assert b.tensors["dwt.image.protected"].shape == (1, 12, 32, 32)
    assert b.history[0]["stage"] == "dwt" and b.history[0]["device"] == "cpu"
    assert (out / "a.copy.png").exists()
    # Finished inputs are skipped unless --overwrite; a half-finished one is an error.
    before = (out / "a.coeffs.safetensors").stat().st_mtime_ns
    again = invoke("run", recipe_file, paths[0], "-o", out, "--save-mask")
    assert again.exit_code == 0 and "skipped" in again.stderr
    assert (out / "a.coeffs.safetensors").stat().st_mtime_ns == before
    partial = invoke("run", recipe_file, paths[0], "-o", out)  # without --save-mask: one output, exists
    assert partial.exit_code == 0 and "skipped" in partial.stderr
    (out / "a.copy.png").unlink()
    half = invoke("run", recipe_file, paths[0], "-o", out, "--save-mask")
    assert half.exit_code == 1 and "already exists" in half.stderr
    assert invoke("run", recipe_file, paths[0], "-o", out, "--save-mask", "--overwrite").exit_code == 0


def test_one_bad_input_does_not_stop_the_others(recipe_file, photos, tmp_path):
    folder, paths = photos
    broken = folder / "broken.png"
    broken.write_text("not an image")
    result = invoke("run", recipe_file, broken, *paths, "-o", tmp_path / "o")
    assert result.exit_code == 1
    assert "broken.png" in result.stderr and "not an image" in result.stderr
    assert sorted(p.name for p in (tmp_path / "o").rglob("*.safetensors")) == ["a.coeffs.safetensors", "b.coeffs.safetensors"]
    assert broken.read_text() == "not an image"  # input untouched


def test_dry_run_writes_nothing(recipe_file, photos, tmp_path):
    folder, _ = photos
    result = invoke("run", recipe_file, folder, "-o", tmp_path / "o", "--dry-run")
    assert result.exit_code == 0 and "nothing written" in result.stderr
    assert not (tmp_path / "o").exists()


def test_bad_recipe_and_inputs_exit_2(recipe_file, tmp_path):
    assert invoke("run", tmp_path / "none.toml", "x.png").exit_code == 2
    r = invoke("run", recipe_file, tmp_path / "missing.png")
    assert r.exit_code == 2 and "no such file or folder" in r.stderr
    r = invoke("run", recipe_file, str(tmp_path / "*.nothing"))
    assert r.exit_code == 2 and "matches no file" in r.stderr


def test_expand_inputs_dedups_and_globs(photos):
    folder, paths = photos
    got = expand_inputs([str(folder), str(paths[0]), str(folder / "*.png")])
    assert [p.name for p in got] == ["a.png", "b.jpg"]


def test_stage_command_accepts_image_and_checks_output(photos, tmp_path):
    _, paths = photos
    out = tmp_path / "s.safetensors"
    r = invoke("stage", "dwt", paths[0], "-o", out, "--set", "odd=pad", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert "dwt.image.protected" in load_bundle(out).tensors
    r = invoke("stage", "dwt", paths[0], "-o", tmp_path / "s.png")
    assert r.exit_code == 2 and "safetensors" in r.stderr
    r = invoke("stage", "dwt", paths[0], "-o", out, "--set", "nope=1")
    assert r.exit_code == 2 and "unknown parameter" in r.stderr
    r = invoke("stage", "dwt", out, "-o", tmp_path / "t.safetensors", "--set", "keys=mask.image")
    assert r.exit_code == 1 and "needs key 'mask.image'" in r.stderr
    r = invoke("stage", "dwt", paths[0], "-o", tmp_path / "u.safetensors", "--device", "tpu")
    assert r.exit_code == 2 and "unknown device" in r.stderr


def test_plugin_stages_load_from_entry_points(monkeypatch):
    class Echo(Stage):
        name = "echo_plugin"
        summary = "test plugin"
        params = (Param("times", int, 1, "how often"),)

        def run(self, bundle, params, ctx):
            pass

    class FakeEP:
        name = "echo_plugin"

        def load(self):
            return Echo

    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda group=None: [FakeEP()] if group == stage_mod.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(stage_mod, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(stage_mod, "_STAGES", dict(stage_mod._STAGES))
    assert "echo_plugin" in stage_mod.available_stages()
    r = recipe_from_dict({"stage": [{"name": "echo_plugin", "params": {"times": 2}}]})
    assert r.steps[0].params == {"times": 2}


def test_duplicate_stage_names_are_refused(monkeypatch):
    monkeypatch.setattr(stage_mod, "_STAGES", dict(stage_mod._STAGES))

    class Other(Stage):
        name = "dwt"

    with pytest.raises(ValueError, match="already registered"):
        stage_mod.register_stage(Other)
