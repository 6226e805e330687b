"""High-level library calls behind the commands that are not recipes (`imnkit extract`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .bundle import Bundle, load_bundle
from .devices import resolve_device
from .embedding import read_aux
from .imageio import check_output_path, load_image, save_png
from .keyed import check_aux_bytes, is_keyed
from .keys import KeySource
from .recipe import output_stem
from .stage import StageContext, get_stage, run_stage


def default_recovered_path(masked: Path) -> Path:
    """'photo.masked.png' -> 'photo.recovered.png' beside it."""
    return masked.with_name(f"{output_stem(masked)}.recovered.png")


@dataclass
class ExtractResult:
    output: Path
    regions: int
    notes: list[str] = field(default_factory=list)


def extract_file(masked: str | Path, aux: str | Path, output: str | Path | None = None, *, weights: str = "",
                 force: bool = False, device: str = "auto", overwrite: bool = False,
                 models: dict | None = None, keys: KeySource | None = None) -> ExtractResult:
    """Recover the protected photo from a masked PNG and its aux; write it as PNG atomically.

    ``keys``: the passphrase or key file when the aux's key is wrapped (see :mod:`imnkit.keys`).
    """
    masked, aux = Path(masked), Path(aux)
    out = Path(output) if output else default_recovered_path(masked)
    check_output_path(out, overwrite=overwrite, inputs=(masked, aux))
    dev = resolve_device(device)
    aux_bundle = load_bundle(aux)
    # a file that is not an aux, or a changed keyed aux, fails here, before the image is read
    if is_keyed(aux_bundle):
        check_aux_bytes(aux.read_bytes(), aux_bundle)
    else:
        read_aux(aux_bundle)
    image = load_image(masked)
    bundle = Bundle(tensors={"image.masked": torch.from_numpy(image), **aux_bundle.tensors},
                    meta=dict(aux_bundle.meta), source=str(aux))
    stage = get_stage("extract")
    params = stage.resolve_params({"weights": weights, "force": force})
    with torch.inference_mode():
        run_stage(stage, bundle, params, StageContext(device=dev, models=models if models is not None else {},
                                                      options={"keys": keys}))
    save_png(out, bundle.tensors["image.recovered"].numpy(), overwrite=overwrite, inputs=(masked, aux))
    return ExtractResult(output=out, regions=int(bundle.tensors["aux.regions"].shape[0]),
                         notes=list(bundle.meta.get("notes", [])))
