"""One input of ``imnkit run``: a photo through the recipe runner, a clip through the video package.

The dispatch lives here, one level above both, so :mod:`imnkit.recipe` (photos) and
:mod:`imnkit.video` (clips, which run the recipe's stages frame by frame) do not import each other.
"""

from __future__ import annotations

from pathlib import Path

from .media import is_video_path
from .recipe import OutputSpec, Runner, RunResult


def planned_outputs(runner: Runner, inp: Path, out_dir: Path | None) -> list[tuple[OutputSpec, Path]]:
    """The files a run on ``inp`` writes: a clip's are fixed (imnkit.video.mask), a photo's the recipe's."""
    if is_video_path(inp):
        from .video.mask import video_outputs

        return [(OutputSpec(path=p.name, bundle=""), p) for p in video_outputs(inp, out_dir, runner.options)]
    return runner.planned_outputs(inp, out_dir)


def run_input(runner: Runner, inp: Path, out_dir: Path | None = None, *, overwrite: bool = False) -> RunResult:
    """Mask ``inp``: a clip frame by frame with faces tracked (imnkit.video), a photo with the recipe."""
    if is_video_path(inp):
        from .video.mask import mask_video

        return mask_video(runner, inp, out_dir, overwrite=overwrite)
    return runner.run_one(inp, out_dir, overwrite=overwrite)
