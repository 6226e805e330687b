"""One review: the photos, the faces listed for each, and the work the page asks for.

The page addresses a photo by its index in the list given on the command line, never by a path,
and sends back which listed faces it keeps and the boxes drawn by hand (:class:`Edit`). A preview
masks the photo in memory (nothing is written); an approval writes the photo's faces file and runs
the recipe with exactly those faces, writing what ``imnkit run --faces`` would write. All model work
runs on one worker thread, in the order asked (the models are loaded once and not shared between
threads).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImnkitError, UsageError
from ..imageio import load_image

DISPLAY_SIDE = 1024  # longest side of the images the page shows (boxes are sent in photo pixels)
MIN_BOX_SIDE = 8  # a drawn box thinner than this is a slip of the mouse, not a face
MAX_ADDED = 64  # boxes drawn by hand on one photo


@dataclass(frozen=True)
class Edit:
    """What the page decided for one photo: the listed faces it keeps and the boxes drawn by hand.

    Boxes are (x0, y0, x1, y1) photo pixels with exclusive ends, as a browser measures them.
    """

    keep: tuple[int, ...] = ()
    add: tuple[tuple[int, int, int, int], ...] = ()


@dataclass
class Photo:
    """One input photo and where its review stands."""

    index: int
    path: Path
    out_dir: Path | None  # where `imnkit run` writes its outputs (None: beside the photo)
    width: int
    height: int
    faces: list[dict]  # the faces file's faces: detected, or read back from an earlier review
    status: str = "to review"  # to review | queued | running | done | failed
    message: str = ""
    outputs: list[Path] = field(default_factory=list)
    result: Path | None = None  # the masked photo among the outputs (the recipe's image.masked output)

    @property
    def folder(self) -> Path:
        return self.out_dir if self.out_dir is not None else self.path.parent

    @property
    def faces_path(self) -> Path:
        from ..faces_file import faces_file_for

        return faces_file_for(self.path, self.folder)


def parse_edit(data: Any, photo: Photo) -> Edit:
    """The page's JSON ``{"keep": [i, ...], "add": [[x0, y0, x1, y1], ...]}`` checked against ``photo``.

    Raises UsageError on anything else (unknown keys, an index not listed, a box outside the photo
    or thinner than MIN_BOX_SIDE): the page never names a file, only faces of the photo it shows.
    """
    if not isinstance(data, dict) or set(data) - {"keep", "add"}:
        raise UsageError("an edit is {keep: [indices], add: [[x0, y0, x1, y1], ...]}")
    keep, add = data.get("keep", []), data.get("add", [])
    if not isinstance(keep, list) or not all(_is_int(i) and 0 <= i < len(photo.faces) for i in keep):
        raise UsageError(f"keep: indices of the photo's {len(photo.faces)} listed face(s)")
    if not isinstance(add, list) or len(add) > MAX_ADDED:
        raise UsageError(f"add: a list of at most {MAX_ADDED} boxes")
    boxes = []
    for box in add:
        if not (isinstance(box, list) and len(box) == 4 and all(_is_int(v) for v in box)):
            raise UsageError("add: each box is [x0, y0, x1, y1] in photo pixels")
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= photo.width and 0 <= y0 < y1 <= photo.height):
            raise UsageError(f"add: box {box} is outside the {photo.width}x{photo.height} photo")
        if min(x1 - x0, y1 - y0) < MIN_BOX_SIDE:
            raise UsageError(f"add: box {box} is smaller than {MIN_BOX_SIDE} pixels")
        boxes.append((x0, y0, x1, y1))
    return Edit(keep=tuple(sorted(set(keep))), add=tuple(boxes))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def display_jpeg(image: np.ndarray, side: int = DISPLAY_SIDE) -> bytes:
    """``image`` shrunk to ``side`` pixels at most, as JPEG bytes (what the page shows; never saved)."""
    from PIL import Image

    img = Image.fromarray(image)
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


class ReviewSession:
    """The photos under review and the single worker that masks them.

    ``runner``: an :class:`imnkit.recipe.Runner` for the recipe, with the run's options (keys, seed).
    ``overwrite``: as ``imnkit run --overwrite``; without it an approval whose outputs exist fails.
    """

    def __init__(self, photos: list[Photo], runner, *, recipe: str, overwrite: bool = False):
        self.photos = photos
        self.runner = runner
        self.recipe = recipe
        self.overwrite = overwrite
        self._lock = threading.Lock()  # guards the photos' status (read by the page, set by the worker)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imnkit-review")
        self._display: dict[int, bytes] = {}

    # -- what the page reads ---------------------------------------------------------------------
    def photo(self, index: int) -> Photo:
        if not 0 <= index < len(self.photos):
            raise KeyError(index)
        return self.photos[index]

    def listing(self) -> dict:
        """The photos, their faces (page boxes) and their status, as JSON for the page."""
        with self._lock:
            return {"recipe": self.recipe, "photos": [self._row(p) for p in self.photos]}

    def progress(self) -> dict:
        with self._lock:
            rows = [self._status(p) for p in self.photos]
        busy = sum(r["status"] in ("queued", "running") for r in rows)
        return {"busy": busy, "done": sum(r["status"] == "done" for r in rows), "total": len(rows), "photos": rows}

    def display_image(self, index: int) -> bytes:
        photo = self.photo(index)
        if index not in self._display:  # a downscaled copy in memory: the photo is read once
            self._display[index] = display_jpeg(load_image(photo.path))
        return self._display[index]

    def result_image(self, index: int) -> bytes | None:
        """The masked photo this review wrote for ``index`` (downscaled), or None before it is done."""
        photo = self.photo(index)
        with self._lock:
            masked = photo.result if photo.status == "done" else None
        return None if masked is None else display_jpeg(load_image(masked))

    # -- what the page asks for ------------------------------------------------------------------
    def preview(self, index: int, edit: Edit) -> Future:
        """A future of the masked photo with ``edit``'s faces, as display JPEG bytes (never written)."""
        return self._worker.submit(self._preview, self.photo(index), edit)

    def approve(self, edits: dict[int, Edit]) -> list[int]:
        """Queue the approval of each photo in ``edits``; returns the indices queued (not those busy)."""
        queued = []
        with self._lock:
            for index, edit in edits.items():
                photo = self.photo(index)
                if photo.status in ("queued", "running"):
                    continue
                photo.status, photo.message = "queued", ""
                queued.append(index)
                self._worker.submit(self._approve, photo, edit)
        return queued

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    # -- on the worker ---------------------------------------------------------------------------
    def _preview(self, photo: Photo, edit: Edit) -> bytes:
        from ..faces_file import faces_document
        from ..recipe import INPUT_IMAGE_KEY, bundle_from_input

        bundle = bundle_from_input(photo.path)
        image = np.asarray(bundle.tensors[INPUT_IMAGE_KEY])
        faces = faces_document(photo.path, image, chosen_faces(photo, edit))["faces"]  # checked, defaults filled
        bundle = self.runner.process(photo.path, bundle=bundle, options=faces_options(photo, faces))
        return display_jpeg(np.asarray(bundle.tensors["image.masked"]))

    def _approve(self, photo: Photo, edit: Edit) -> None:
        self._set(photo, "running")
        try:
            outputs, notes = self._write(photo, chosen_faces(photo, edit))
        except ImnkitError as err:
            self._set(photo, "failed", err.message + (f" ({err.hint})" if err.hint else ""))
        except Exception as err:  # noqa: BLE001  an imnkit bug: the page says so, the server stays up
            self._set(photo, "failed", f"unexpected {type(err).__name__}")
        else:
            self._set(photo, "done", "; ".join(notes), outputs=outputs)

    def _write(self, photo: Photo, chosen: list[dict]) -> tuple[list[Path], list[str]]:
        """The faces file, then the recipe's outputs as `imnkit run --faces` writes them: (paths, notes)."""
        from ..errors import OutputError
        from ..faces_file import faces_document, write_faces_file

        plan = self.runner.planned_outputs(photo.path, photo.out_dir)
        planned = [path for _, path in plan]
        if not self.overwrite and any(p.exists() for p in planned):
            raise OutputError(f"{planned[0].parent}: the outputs exist", hint="start the review with --overwrite")
        doc = faces_document(photo.path, load_image(photo.path), chosen)
        written = write_faces_file(photo.faces_path, doc, overwrite=True)  # this review's own record
        result = run_with_faces(self.runner, photo, doc["faces"], overwrite=self.overwrite)
        if result.status != "ok":
            raise OutputError(result.message or f"the run {result.status}")
        with self._lock:
            photo.faces = doc["faces"]  # what the faces file now says
            photo.result = next((p for spec, p in plan if getattr(spec, "image", None) == "image.masked"), None)
        return [Path(written), *result.outputs], list(result.notes)

    def _set(self, photo: Photo, status: str, message: str = "", outputs: list[Path] | None = None) -> None:
        with self._lock:
            photo.status, photo.message = status, message
            if outputs is not None:
                photo.outputs = outputs

    # -- rows ------------------------------------------------------------------------------------
    def _row(self, photo: Photo) -> dict:
        faces = [{"box": page_box(f), "detector": f.get("detector"), "score": f.get("score"),
                  "review": bool(f.get("review", False)), "masked": listed_masked(f)} for f in photo.faces]
        return {"index": photo.index, "name": photo.path.name, "width": photo.width, "height": photo.height,
                "faces": faces, **self._status(photo)}

    @staticmethod
    def _status(photo: Photo) -> dict:
        return {"index": photo.index, "status": photo.status, "message": photo.message,
                "outputs": [p.name for p in photo.outputs]}


# -- the faces file's side (imnkit.faces_file) --------------------------------------------------
def page_box(face: dict) -> list[int]:
    """A faces-file face's box as the page draws it: [x0, y0, x1, y1] (the file's own order)."""
    return [int(v) for v in face["box"]]


def drawn_face(box: tuple[int, int, int, int]) -> dict:
    """A face drawn by hand, as the faces file lists it: its box; landmarks are fitted when masked."""
    return {"box": list(box), "detector": "user"}


def listed_masked(face: dict) -> bool:
    """Whether a listed face is masked as it stands: a doubtful one the default leaves bare is not."""
    return face.get("treatment") != "none"


def chosen_faces(photo: Photo, edit: Edit) -> list[dict]:
    """The photo's listed faces that ``edit`` keeps, then the ones it draws.

    A listed face the default leaves bare (treatment "none") that the page keeps is masked: its
    treatment goes back to the recipe's choice. A face the page drops is left out of the list.
    """
    kept = [photo.faces[i] for i in edit.keep]
    kept = [face if listed_masked(face) else {**face, "treatment": None} for face in kept]
    return kept + [drawn_face(b) for b in edit.add]


def faces_options(photo: Photo, faces: list[dict]) -> dict:
    """The Runner options that mask exactly ``faces`` (checked entries) on ``photo``, as `imnkit run
    --faces` sets them: the align stage looks its input's entries up by the bundle's source."""
    return {"faces": {str(photo.path): faces}}


def run_with_faces(runner, photo: Photo, faces: list[dict], *, overwrite: bool):
    old = runner.options.get("faces")
    runner.options.update(faces_options(photo, faces))
    try:
        return runner.run_one(photo.path, photo.out_dir, overwrite=overwrite)
    finally:
        runner.options["faces"] = old


# -- opening a review --------------------------------------------------------------------------
def open_photos(targets: list[tuple[Path, Path | None]], *, recipe: str, sets: list[str], device: str | None,
                on_photo: Callable[[Path], None] | None = None) -> list[Photo]:
    """Read each photo and list its faces: from its faces file when one is in the output folder
    (an earlier review, or `imnkit faces`), else detected now."""
    from ..faces_file import detect_faces, load_faces_file

    photos = []
    for index, (path, out_dir) in enumerate(targets):
        if on_photo is not None:
            on_photo(path)
        image = load_image(path)
        photo = Photo(index=index, path=path, out_dir=out_dir, width=image.shape[1], height=image.shape[0], faces=[])
        if photo.faces_path.exists():
            photo.faces = load_faces_file(photo.faces_path, image)
        else:
            photo.faces = list(detect_faces(image, recipe=recipe, sets=tuple(sets), device=device)["faces"])
        photos.append(photo)
    return photos
