"""Recipes: TOML files that chain stages, validated whole before anything runs.

Format::

    [recipe]
    name = "mask"
    description = "..."

    [[stage]]
    name = "align"            # a registered stage
    id = "align"              # optional; what --set refers to (defaults to the name)
    device = "auto"           # auto | cpu | cuda | cuda:N
    params = { faces = "all" }

    [[output]]
    path = "{stem}.masked.png"   # placeholders: {stem} {name} {ext} {recipe}
    image = "image.masked"       # an image key -> PNG
    [[output]]
    path = "{stem}.aux.safetensors"
    bundle = "aux."              # keys with this prefix -> a bundle
    history = false              # leave the stage history out of this bundle
    [[output]]
    path = "{stem}.mask.png"
    image = "mask.image"
    when = "save_mask"           # written only when that option is on (--save-mask)
    [[output]]
    path = "{stem}.PRIVATE-preview.png"
    image = "preview.image"
    when = "preview"
    private = true               # the original faces are in it: mode 0600, like the bundles

Image outputs are written mode 0644 (the masked photo is for sharing) unless ``private = true``;
bundle outputs (the aux holds the key, a bundle the original photo) are always 0600. Every output
is written through :mod:`imnkit.safefile` (random exclusive temporary, then a rename).

An image file as input becomes a bundle holding ``image.protected``; a bundle file is read as is.
"""

from __future__ import annotations

import glob
import os
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .batch import output_stem
from .bundle import Bundle, load_bundle, tensor_to_image
from .devices import check_device_name, plan_device
from .errors import ExitCode, ImnkitError, OutputError, UsageError
from .imageio import IMAGE_SUFFIXES, check_output_path, encode_png, is_image_path, load_image, read_exif
from .safefile import PRIVATE, SHAREABLE, write_all
from .stage import Stage, StageContext, get_stage, run_stage
from .media import VIDEO_SUFFIXES

INPUT_IMAGE_KEY = "image.protected"
_KNOWN_PLACEHOLDERS = ("stem", "name", "ext", "recipe")


@dataclass
class StageStep:
    id: str
    stage: Stage
    device: str
    params: dict[str, Any]


@dataclass
class OutputSpec:
    path: str
    image: str | None = None
    bundle: str | None = None
    when: str | None = None
    history: bool = True  # bundle outputs: include the stage history (the aux leaves it out)
    private: bool = False  # image outputs: mode 0600 instead of 0644 (bundles are always 0600)
    # image outputs: also carry the bundle of keys with this prefix in the PNG (the aux, with recipients:
    # imnkit.protect.container); set by the run's options, not by recipes
    carry: str | None = None


@dataclass
class Recipe:
    name: str
    description: str
    steps: list[StageStep]
    outputs: list[OutputSpec]
    source: str = ""

    def provided_keys(self, initial: set[str]) -> set[str]:
        keys = set(initial)
        for step in self.steps:
            keys |= set(step.stage.provides_for(step.params))
        return keys


def _parse_overrides(sets: list[str]) -> dict[str, dict[str, str]]:
    """['swap.seed=3', ...] -> {'swap': {'seed': '3'}}."""
    out: dict[str, dict[str, str]] = {}
    for item in sets:
        key, eq, value = item.partition("=")
        sid, dot, param = key.strip().partition(".")
        if not eq or not dot or not sid or not param:
            raise UsageError(f"--set '{item}' must look like stage.param=value")
        out.setdefault(sid, {})[param] = value
    return out


def load_recipe(path: str | os.PathLike, *, sets: list[str] = (), device: str | None = None) -> Recipe:
    """Read and validate a recipe: stages, parameters (with ``--set`` overrides), devices, outputs.

    Everything is checked here, before any input is touched. Raises UsageError.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"recipe {path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"recipe {path}: not valid TOML ({err})") from None
    return recipe_from_dict(data, source=str(path), sets=sets, device=device)


def resolve_recipe_path(recipe: str) -> Path:
    """A recipe path, or the name of a built-in recipe (``mask`` -> the packaged mask.toml)."""
    path = Path(recipe)
    if path.exists() or path.suffix == ".toml":
        return path
    from importlib import resources

    builtin = resources.files("imnkit.recipes").joinpath(f"{recipe}.toml")
    return Path(str(builtin)) if builtin.is_file() else path


def recipe_from_dict(data: dict, *, source: str = "<recipe>", sets: list[str] = (), device: str | None = None) -> Recipe:
    unknown_top = sorted(set(data) - {"recipe", "stage", "output"})
    if unknown_top:
        raise UsageError(f"recipe {source}: unknown section(s) {', '.join(unknown_top)} (known: recipe, stage, output)")
    head = data.get("recipe", {})
    unknown_head = sorted(set(head) - {"name", "description"})
    if unknown_head:
        raise UsageError(f"recipe {source}: unknown key(s) in [recipe]: {', '.join(unknown_head)}")
    if device is not None:
        check_device_name(device)
    overrides = _parse_overrides(list(sets))
    steps: list[StageStep] = []
    raw_stages = data.get("stage", [])
    if not isinstance(raw_stages, list) or not raw_stages:
        raise UsageError(f"recipe {source}: it has no [[stage]] entries")
    for i, raw in enumerate(raw_stages, 1):
        where = f"recipe {source}, stage {i}"
        unknown = sorted(set(raw) - {"name", "id", "device", "params"})
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} (known: name, id, device, params)")
        if "name" not in raw:
            raise UsageError(f"{where}: missing 'name'")
        stage = get_stage(raw["name"])
        sid = raw.get("id", raw["name"])
        where = f"recipe {source}, stage '{sid}'"
        if any(s.id == sid for s in steps):
            raise UsageError(f"{where}: the id '{sid}' is used twice; give one an 'id'")
        params = dict(raw.get("params", {}))
        step_device = raw.get("device", "auto")
        for key, value in overrides.pop(sid, {}).items():
            if key == "device":
                step_device = value
            else:
                params[key] = value
        if device is not None:
            step_device = device
        check_device_name(step_device)
        steps.append(StageStep(id=sid, stage=stage, device=step_device, params=stage.resolve_params(params, where=where)))
    if overrides:
        raise UsageError(f"--set names stage(s) not in the recipe: {', '.join(sorted(overrides))}")
    outputs = []
    for i, raw in enumerate(data.get("output", []), 1):
        where = f"recipe {source}, output {i}"
        unknown = sorted(set(raw) - {"path", "image", "bundle", "when", "history", "private"})
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} "
                             "(known: path, image, bundle, when, history, private)")
        spec = OutputSpec(**raw)
        if not spec.path or (spec.image is None) == (spec.bundle is None):
            raise UsageError(f"{where}: needs a 'path' and exactly one of 'image' or 'bundle'")
        if not isinstance(spec.private, bool) or (spec.bundle is not None and not spec.private and "private" in raw):
            raise UsageError(f"{where}: 'private' must be true or false, and a bundle is always private")
        _check_template(spec.path, where)
        outputs.append(spec)
    recipe = Recipe(name=head.get("name", Path(source).stem), description=head.get("description", ""),
                    steps=steps, outputs=outputs, source=source)
    validate_chain(recipe, {INPUT_IMAGE_KEY})
    return recipe


def _check_template(template: str, where: str) -> None:
    import string

    for _, fname, _, _ in string.Formatter().parse(template):
        if fname is not None and fname not in _KNOWN_PLACEHOLDERS:
            raise UsageError(f"{where}: unknown placeholder {{{fname}}} (known: {', '.join(_KNOWN_PLACEHOLDERS)})")


def validate_chain(recipe: Recipe, initial: set[str]) -> None:
    """Every stage's requirements are met by the input or an earlier stage; outputs exist."""
    keys = set(initial)
    for step in recipe.steps:
        missing = [k for k in step.stage.requires_for(step.params) if k not in keys]
        if missing:
            raise UsageError(
                f"recipe {recipe.source}: stage '{step.id}' needs {', '.join(missing)}, "
                f"which neither the input nor an earlier stage provides"
            )
        keys |= set(step.stage.provides_for(step.params))
    for out in recipe.outputs:
        if out.image and out.image not in keys:
            raise UsageError(f"recipe {recipe.source}: output {out.path} wants image '{out.image}', which no stage provides")
        if out.bundle and not any(k.startswith(out.bundle) for k in keys):
            raise UsageError(f"recipe {recipe.source}: output {out.path} wants keys '{out.bundle}*', which no stage provides")


# -- inputs --------------------------------------------------------------------------------------
def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (recursive, images and videos, sorted) and globs -> a de-duplicated list of files."""
    found: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        elif p.exists():
            found.append(p)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise UsageError(f"'{item}' matches no file")
            found += matches
        else:
            raise UsageError(f"{item}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in found:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def bundle_from_input(path: Path, data: bytes | None = None) -> Bundle:
    """An image file -> a bundle with ``image.protected``; a .safetensors file -> that bundle.

    ``data``: the file's bytes when they were read already (the Ray engine reads them in its own tasks).
    """
    if path.suffix.lower() == ".safetensors":
        return load_bundle(path) if data is None else Bundle.from_bytes(data, source=str(path))
    image = load_image(path, data=data)  # any other suffix is tried as an image: load_image says if it is not one
    return Bundle(tensors={INPUT_IMAGE_KEY: image}, meta={"source.name": path.name}, source=str(path))


def output_paths(recipe: Recipe, inp: Path, out_dir: Path | None, options: dict[str, Any]) -> list[tuple[OutputSpec, Path]]:
    """Where each of the recipe's outputs goes for ``inp``.

    With the option ``aux_in_png`` (recipients: the aux holds no secret) the aux rides inside the
    masked PNG, and its sidecar file is written only with the option ``sidecar``.
    """
    values = {"stem": output_stem(inp), "name": inp.name, "ext": inp.suffix.lstrip("."), "recipe": recipe.name}
    folder = out_dir if out_dir is not None else inp.parent
    inside = bool(options.get("aux_in_png"))
    out = []
    for spec in recipe.outputs:
        if spec.when and not options.get(spec.when):
            continue
        if inside and spec.bundle == "aux." and not options.get("sidecar"):
            continue
        if inside and spec.image == "image.masked":
            spec = replace(spec, carry="aux.")
        out.append((spec, folder / spec.path.format(**values)))
    if options.get("keep_bundles"):
        out.append((OutputSpec(path="{stem}.bundle.safetensors", bundle=""), folder / f"{values['stem']}.bundle.safetensors"))
    return out


# -- running -------------------------------------------------------------------------------------
@dataclass
class RunResult:
    input: Path
    status: str  # "ok" | "failed" | "skipped"
    outputs: list[Path] = field(default_factory=list)
    message: str = ""
    exit_code: int = ExitCode.OK
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)  # what stages report per input (e.g. embed's codecs)

    def to_row(self) -> dict[str, Any]:
        """The result as one JSON-able row: what `--json` prints and the Ray engine's manifest holds."""
        return {"path": str(self.input), "status": self.status,
                "error": self.message if self.status == "failed" else None, "message": self.message,
                "seconds": round(self.seconds, 3), "outputs": [str(p) for p in self.outputs],
                "exit_code": self.exit_code, "notes": list(self.notes), "report": self.report}


class Runner:
    """Runs a validated recipe over inputs, loading each model once per process."""

    def __init__(self, recipe: Recipe, *, options: dict[str, Any] | None = None):
        self.recipe = recipe
        self.options = dict(options or {})
        self.models: dict[tuple, Any] = {}
        # Check devices up front: an unavailable GPU fails before any work starts.
        self.devices = {step.id: plan_device(step.device) for step in recipe.steps}

    def planned_outputs(self, inp: Path, out_dir: Path | None) -> list[tuple[OutputSpec, Path]]:
        """The recipe's outputs for photo ``inp`` (a clip's: :func:`imnkit.jobs.planned_outputs`)."""
        return output_paths(self.recipe, inp, out_dir, self.options)

    def run_one(self, inp: Path, out_dir: Path | None = None, *, overwrite: bool = False,
                bundle: Bundle | None = None) -> RunResult:
        """Run the stages on photo ``inp`` (or on ``bundle``, already read from it) and write the outputs.

        A clip goes through :func:`imnkit.jobs.run_input` instead.
        """
        start = time.perf_counter()
        planned = self.planned_outputs(inp, out_dir)
        if planned and not overwrite and all(path.exists() for _, path in planned):
            return RunResult(inp, "skipped", outputs=[p for _, p in planned], message="already done (outputs exist)",
                             seconds=time.perf_counter() - start)
        try:
            for _, path in planned:
                check_output_path(path, overwrite=overwrite, inputs=(inp,))
            bundle = self.process(inp, bundle=bundle)
            written = write_outputs(bundle, planned, inp, overwrite=overwrite, keep_metadata=self.options.get("keep_metadata", False))
        except ImnkitError as err:
            return RunResult(inp, "failed", message=_message(err), exit_code=err.exit_code, seconds=time.perf_counter() - start)
        notes = list(bundle.meta.get("notes", []))
        return RunResult(inp, "ok", outputs=written, seconds=time.perf_counter() - start, notes=notes,
                         report=dict(bundle.meta.get("report", {})))

    def process(self, inp: Path, *, bundle: Bundle | None = None, options: dict[str, Any] | None = None) -> Bundle:
        """Run the stages on one input and return the bundle (nothing written).

        ``bundle``: the input already read (or made by earlier stages elsewhere); it is changed in place.
        ``options``: this input's options over the runner's (e.g. its own passphrase, in the Python API).
        """
        if bundle is None:
            bundle = bundle_from_input(inp)
        if inp.suffix.lower() == ".safetensors":
            validate_chain(self.recipe, set(bundle.tensors))
        options = {**self.options, **(options or {})}
        seed = options.get("seed")
        for step in self.recipe.steps:
            ctx = StageContext(device=self.devices[step.id], models=self.models, options=options)
            params = dict(step.params)
            if seed is not None and "seed" in params:
                params["seed"] = seed
            if step.stage.uses_torch(params, options):
                import torch

                with torch.inference_mode():
                    run_stage(step.stage, bundle, params, ctx)
            else:  # numpy stages: a recipe of them never imports torch (~2 s of a run on 2 cores)
                run_stage(step.stage, bundle, params, ctx)
        return bundle


def _message(err: ImnkitError) -> str:
    return f"{err.message}" + (f" ({err.hint})" if err.hint else "")


def write_outputs(bundle: Bundle, planned: list[tuple[OutputSpec, Path]], inp: Path, *, overwrite: bool,
                  keep_metadata: bool = False) -> list[Path]:
    """Encode every output first, then write them all atomically; on failure remove what was written."""
    exif = read_exif(inp) if keep_metadata and is_image_path(inp) else None
    return write_files(encode_outputs(bundle, planned, exif=exif), overwrite=overwrite, inputs=(inp,))


def encode_outputs(bundle: Bundle, planned: list[tuple[OutputSpec, Any]], *,
                   exif: bytes | None = None) -> list[tuple[Any, bytes, int]]:
    """Each planned output as ``(path, bytes, file mode)``: PNGs for images, safetensors for bundles.

    ``path`` is passed through untouched (a Path, or a URL for the Ray engine's remote outputs).
    """
    blobs: list[tuple[Any, bytes, int]] = []
    for spec, path in planned:
        if spec.image is not None:
            image = tensor_to_image(bundle.require(spec.image), spec.image)
            # the masked photo is for sharing; a private image (the preview: original faces) is not
            png = encode_png(image, exif=exif)
            if spec.carry is not None:  # the aux (sealed to recipients: no secret in it) inside the PNG
                from .protect.container import with_aux

                png = with_aux(png, _bundle_bytes(bundle, spec.carry, history=False))
            blobs.append((path, png, PRIVATE if spec.private else SHAREABLE))
        else:
            # bundles hold the key (the aux) or the original photo: readable by the owner only
            blobs.append((path, _bundle_bytes(bundle, spec.bundle or "", history=spec.history), PRIVATE))
    return blobs


def _bundle_bytes(bundle: Bundle, prefix: str, *, history: bool) -> bytes:
    part = bundle.subset(prefix)
    if not history:
        part.history = []
    return part.to_bytes()


def write_files(blobs: list[tuple[Path, bytes, int]], *, overwrite: bool, inputs: tuple = ()) -> list[Path]:
    """Write local files atomically, all or none, each with its mode (:func:`imnkit.safefile.write_all`)."""
    for path, _, _ in blobs:
        check_output_path(path, overwrite=overwrite, inputs=inputs)
    try:
        return write_all(blobs)
    except OSError as err:
        raise OutputError(f"writing the outputs failed ({err.strerror or type(err).__name__}); nothing was kept") from None


def summary_exit_code(results: list[RunResult]) -> int:
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return ExitCode.OK
    if len(results) == 1:
        return failed[0].exit_code
    return ExitCode.FAILED
