"""The stage contract and the stage registry.

A stage is a class with a name, the bundle keys it requires and provides, typed parameters with
defaults and validation, and the weights it uses. ``run`` reads the bundle, adds to it, and returns
nothing; the runner records the history entry. Built-in stages live in ``imnkit.stages``; other
packages add stages through the ``imnkit.stages`` entry-point group (``name = "pkg.module:StageClass"``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from . import __version__
from .bundle import Bundle
from .errors import UsageError

if TYPE_CHECKING:
    import torch

ENTRY_POINT_GROUP = "imnkit.stages"


@dataclass(frozen=True)
class Param:
    """One typed stage parameter. ``type`` is int, float, str or bool."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None

    def coerce(self, value: Any, *, where: str) -> Any:
        """Check (and, for strings from the command line, convert) a value; UsageError if it does not fit."""
        expected = self.type.__name__
        if isinstance(value, str) and self.type is not str:
            value = self._parse(value, where)
        if self.type is bool:
            if not isinstance(value, bool):
                raise UsageError(f"{where}: '{self.name}' must be true or false, got {value!r}")
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(f"{where}: '{self.name}' must be an integer, got {value!r}")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UsageError(f"{where}: '{self.name}' must be a number, got {value!r}")
            value = float(value)
        elif self.type is str:
            if not isinstance(value, str):
                raise UsageError(f"{where}: '{self.name}' must be a string, got {value!r}")
        else:  # pragma: no cover - a stage author's mistake
            raise TypeError(f"unsupported parameter type {expected}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise UsageError(f"{where}: '{self.name}' must be one of {allowed}, got {value!r}")
        if self.min is not None and value < self.min:
            raise UsageError(f"{where}: '{self.name}' must be >= {self.min}, got {value!r}")
        if self.max is not None and value > self.max:
            raise UsageError(f"{where}: '{self.name}' must be <= {self.max}, got {value!r}")
        return value

    def _parse(self, text: str, where: str) -> Any:
        try:
            if self.type is bool:
                low = text.strip().lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            return self.type(text)
        except ValueError:
            kind = "true or false" if self.type is bool else self.type.__name__
            raise UsageError(f"{where}: '{self.name}' must be {kind}, got '{text}'") from None


class StageContext:
    """What a stage gets besides the bundle: its device, the process-wide model cache, options.

    ``device``: a torch.device, or the name ``cpu`` / ``auto``, resolved when the stage first reads
    ``ctx.device`` (a stage that never does ran on the CPU and never needed torch).
    ``models``: shared across inputs, so each model loads once; ``options``: run-wide switches.
    """

    def __init__(self, device: str | torch.device = "cpu", models: dict[tuple, Any] | None = None,
                 options: dict[str, Any] | None = None):
        self.planned = device
        self.models = {} if models is None else models
        self.options = {} if options is None else options

    @property
    def device(self) -> torch.device:
        if isinstance(self.planned, str):
            from .devices import resolve_device

            self.planned = resolve_device(self.planned)
        return self.planned

    def device_label(self) -> str:
        """The device the stage ran on, for its history entry."""
        return "cpu" if isinstance(self.planned, str) else str(self.planned)

    def cached(self, key: tuple, factory):
        """Return the model cached under ``key``, building it with ``factory()`` on first use."""
        if key not in self.models:
            self.models[key] = factory()
        return self.models[key]


class Stage:
    """Base class of every stage. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()  # read when present
    provides: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[tuple[Param, ...]] = ()

    # Contracts may depend on parameters (e.g. dwt's image keys); override these when they do.
    def requires_for(self, params: dict[str, Any]) -> tuple[str, ...]:
        return self.requires

    def provides_for(self, params: dict[str, Any]) -> tuple[str, ...]:
        return self.provides

    def weights_for(self, params: dict[str, Any]) -> tuple[str, ...]:
        """Registry names of the weights this stage loads with these parameters."""
        return ()

    def uses_torch(self, params: dict[str, Any], options: dict[str, Any]) -> bool:
        """Whether this run of the stage computes with torch (then it runs under inference mode).

        Stages on numpy alone say False, so a recipe of such stages never imports torch.
        """
        return True

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        raise NotImplementedError

    # -- parameters ---------------------------------------------------------------------------
    def resolve_params(self, given: dict[str, Any], *, where: str | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``given``, every value checked; unknown names are a UsageError."""
        where = where or f"stage '{self.name}'"
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            names = ", ".join(sorted(known)) or "none"
            raise UsageError(f"{where}: unknown parameter(s) {', '.join(unknown)} (known: {names})")
        out = {p.name: p.default for p in self.params}
        for key, value in given.items():
            out[key] = known[key].coerce(value, where=where)
        return out


def run_stage(stage: Stage, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
    """Run one stage on a bundle with resolved params and append its history entry."""
    for key in stage.requires_for(params):
        bundle.require(key, stage=stage.name)
    from .weights import weights_digest

    start = time.perf_counter()
    stage.run(bundle, params, ctx)
    seconds = time.perf_counter() - start
    bundle.history.append(
        {
            "stage": stage.name,
            "params": params,
            "weights": {name: weights_digest(name) for name in stage.weights_for(params)},
            "device": ctx.device_label(),
            "seconds": round(seconds, 4),
            "imnkit_version": __version__,
        }
    )


# -- registry -----------------------------------------------------------------------------------
_STAGES: dict[str, type[Stage]] = {}
_ENTRY_POINTS_LOADED = False


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator adding a stage to the registry; a duplicate name is an error."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no stage name")
    if cls.name in _STAGES and _STAGES[cls.name] is not cls:
        raise ValueError(f"a stage named '{cls.name}' is already registered ({_STAGES[cls.name].__module__})")
    _STAGES[cls.name] = cls
    return cls


def _load_builtin_and_plugins() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    import imnkit.stages  # noqa: F401  (registers the built-in stages)

    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as err:  # a broken plugin must not break the built-in stages
            import logging

            logging.getLogger("imnkit").warning("stage plugin '%s' failed to load: %s", ep.name, type(err).__name__)
            continue
        if isinstance(cls, type) and issubclass(cls, Stage):
            if not cls.name:
                cls.name = ep.name
            register_stage(cls)


def available_stages() -> dict[str, type[Stage]]:
    _load_builtin_and_plugins()
    return dict(sorted(_STAGES.items()))


def get_stage(name: str) -> Stage:
    stages = available_stages()
    if name not in stages:
        raise UsageError(f"unknown stage '{name}'", hint=f"known stages: {', '.join(stages)}")
    return stages[name]()
