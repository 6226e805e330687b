"""The faces file: which faces of one photo to mask, as JSON a person (or the review page) can edit.

``imnkit faces photo.jpg`` writes ``photo.faces.json``; ``imnkit run mask photo.jpg --faces
photo.faces.json`` masks exactly the faces it lists. Schema ``imnkit.faces/1`` (docs/review.md)::

    {
      "schema": "imnkit.faces/1",
      "photo": {"name": "photo.jpg", "width": 640, "height": 480,
                "sha256": "<imnkit.imageio.pixels_digest of the pixels as loaded, EXIF turn applied>"},
      "faces": [
        {"box": [x0, y0, x1, y1], "points": [[x, y], ...5], "detector": "dlib", "score": 1.23,
         "treatment": "swap", "identity": null, "review": false}
      ]
    }

Per face (only ``box`` is required in a hand-written entry; the others default as shown):

``box``        ``[x0, y0, x1, y1]``: left, top, right, bottom in photo pixels, exclusive ends
               (``image[y0:y1, x0:x1]``; the order a browser, PIL and COCO-style tools use). Inside
               the photo, non-zero area. NB: inside imnkit boxes are ``(y0, x0, y1, x1)``
               (:mod:`imnkit.face.detect`); :func:`file_box` and :func:`record_box` convert.
``points``     the 5 points (image-left eye, image-right eye, nose tip, mouth corners) as
               ``[x, y]`` floats, or ``null`` (default) for a box drawn by hand.
``detector``   ``"dlib"``, ``"centerface"`` or ``"user"`` (default: drawn by hand).
``score``      the detector's score (dlib HOG and CenterFace scores are on different scales), or null.
``treatment``  null (default: the recipe decides: the natural swap where 68 landmarks fit, else the
               fallback), ``"swap"``, ``"fallback"`` (the best Mask that works: warp5, then
               obfuscate), ``"warp5"``, ``"obfuscate"``, or ``"none"`` (listed but left as it is).
``identity``   a pool identity name (``imnkit identities``) to use for this face, or null (dealt).
``review``     true when the detection is doubtful (score under :data:`imnkit.face.detect.REVIEW_BELOW`):
               look at it before publishing. Informational when read back.

A face that is not in the list is left as it is. A face listed with a detector's box is masked as
the detector found it; a box added (or moved) by hand gets dlib's 68 landmarks fitted in it, or the
fallback treatment when they do not fit (``imnkit.face.detect.face_in_box``).

Reading a file (:func:`load_faces_file`) checks it against the photo: another photo's file (digest
or size), invalid JSON, a box outside the photo or of zero area, an unknown key, treatment or
identity: a :class:`~imnkit.errors.UsageError` (exit 2) with one line naming the face.

Public API (used by ``imnkit faces``, ``imnkit run --faces`` and the review page):
:data:`SCHEMA`, :func:`detect_faces`, :func:`faces_document`, :func:`write_faces_file`,
:func:`load_faces_file`, :func:`faces_file_for`; :func:`file_box` / :func:`record_box`.

Clips (the same schema, a ``clip`` and ``tracks`` instead of ``photo`` and ``faces``; the section at
the end of this module): :func:`detect_clip_faces`, :func:`clip_facts`, :func:`load_clip_faces_file`,
:func:`track_box`; ``imnkit run`` on a clip masks exactly the tracks listed (:mod:`imnkit.video.mask`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import OutputError, UsageError
from .imageio import check_output_path, pixels_digest

SCHEMA = "imnkit.faces/1"
SUFFIX = ".faces.json"
DETECTORS = ("dlib", "centerface", "user")
TREATMENTS = ("swap", "fallback", "warp5", "obfuscate", "none")  # or None: the recipe decides
FACE_KEYS = ("box", "points", "detector", "score", "treatment", "identity", "review")
_DEFAULTS = {"points": None, "detector": "user", "score": None, "treatment": None, "identity": None, "review": False}
_MAX_BYTES = 4 << 20  # a faces file lists boxes: anything this large is not one


def file_box(box: Sequence[int]) -> list[int]:
    """An imnkit ``(y0, x0, y1, x1)`` box as the faces file writes it: ``[x0, y0, x1, y1]``."""
    y0, x0, y1, x1 = (int(v) for v in box)
    return [x0, y0, x1, y1]


def record_box(box: Sequence[int]) -> tuple[int, int, int, int]:
    """A faces-file ``[x0, y0, x1, y1]`` box as imnkit's ``(y0, x0, y1, x1)``."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return (y0, x0, y1, x1)


def faces_file_for(photo: Path, folder: Path | None = None) -> Path:
    """Where a photo's faces file goes: ``{stem}.faces.json`` in ``folder`` (default: beside the photo)."""
    from .batch import output_stem

    return (photo.parent if folder is None else folder) / f"{output_stem(photo)}{SUFFIX}"


def detect_faces(image: np.ndarray, *, recipe: str = "mask", sets: Sequence[str] = (), device: str | None = None) -> dict:
    """Find the faces the recipe would mask in ``image`` (its align stage, with ``sets`` applied); mask nothing.

    Returns a faces-file dict (:func:`faces_document` with no name): ``schema``, ``photo`` and
    ``faces``, each face with its planned treatment (identity null: dealt when masked) and its
    ``review`` flag. Doubtful detections the default leaves bare are listed with treatment ``"none"``.
    """
    from .bundle import Bundle
    from .recipe import INPUT_IMAGE_KEY, load_recipe, resolve_recipe_path
    from .stage import StageContext, run_stage

    rec = load_recipe(resolve_recipe_path(recipe), sets=list(sets), device=device)
    step = next((s for s in rec.steps if s.stage.name == "align"), None)
    if step is None:
        raise UsageError(f"recipe {rec.source} has no align stage: it finds no faces")
    bundle = Bundle(tensors={INPUT_IMAGE_KEY: image}, meta={})
    run_stage(step.stage, bundle, step.params, StageContext(options={"allow_no_face": True}))
    return {"schema": SCHEMA, "photo": _photo(None, image), "faces": list(bundle.meta.get("faces.listed", []))}


def faces_document(path: Path | None, image: np.ndarray, faces: list[dict]) -> dict:
    """The whole faces file for ``image`` (read from ``path``) listing ``faces`` (checked, defaults filled)."""
    h, w = image.shape[:2]
    where = str(path) if path is not None else "faces"
    return {"schema": SCHEMA, "photo": _photo(path, image),
            "faces": [check_face(f, i, (h, w), where) for i, f in enumerate(faces)]}


def _photo(path: Path | None, image: np.ndarray) -> dict:
    return {"name": None if path is None else Path(path).name, "width": int(image.shape[1]),
            "height": int(image.shape[0]), "sha256": pixels_digest(image)}


def dumps(doc: dict) -> str:
    """The file's text: one face per line, so a person can edit it and a diff shows each face."""
    key = "tracks" if "tracks" in doc else "faces"  # a clip's file: one track per line
    head = {k: v for k, v in doc.items() if k != key}
    lines = [json.dumps(f, allow_nan=False) for f in doc.get(key, [])]
    body = json.dumps(head, indent=2, allow_nan=False)[:-2]  # without the closing "\n}"
    faces = "[]" if not lines else "[\n    " + ",\n    ".join(lines) + "\n  ]"
    return f'{body},\n  "{key}": {faces}\n}}\n'


def write_faces_file(path: Path, doc: dict, *, overwrite: bool = False) -> Path:
    """Write ``doc`` to ``path`` atomically (mode 0600: it names the photo and its digest)."""
    from .safefile import PRIVATE, write_file

    path = Path(path)
    check_output_path(path, overwrite=overwrite)
    try:
        return write_file(path, dumps(doc).encode("utf-8"), mode=PRIVATE)
    except OSError as err:
        raise OutputError(f"{path}: the write failed ({err.strerror or err}); nothing was written") from None


def _read_kind(path: Path, kind: str, items: str) -> tuple[dict, dict]:
    """(document, its ``kind`` entry) of a faces file for a ``kind`` ("photo" or "clip") listing ``items``."""
    doc = _read_doc(path)
    other = "clip" if kind == "photo" else "photo"
    if other in doc and kind not in doc:
        listed = "faces" if kind == "photo" else "tracks"
        raise UsageError(f"{path}: a {other}'s faces file, not a {kind}'s",
                         hint=f"run imnkit faces on this {kind} to list its {listed}")
    unknown = sorted(set(doc) - {"schema", kind, items})
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)} (known: schema, {kind}, {items})")
    entry = doc.get(kind)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise UsageError(f"{path}: its \"{kind}\" has no sha256 digest")
    return doc, entry


def load_faces_file(path: Path, image: np.ndarray) -> list[dict]:
    """The faces ``path`` lists for ``image``, checked (see the module docstring), defaults filled.

    Raises:
        UsageError: not a faces file, another photo's, or a face that cannot be (one line each).
    """
    doc, photo = _read_kind(Path(path), "photo", "faces")
    h, w = image.shape[:2]
    if photo.get("width") != w or photo.get("height") != h or photo["sha256"] != pixels_digest(image):
        raise UsageError(f"{path}: the faces file is for another photo (its pixel digest differs)",
                         hint="run imnkit faces on this photo to list its faces")
    faces = doc.get("faces")
    if not isinstance(faces, list):
        raise UsageError(f"{path}: \"faces\" must be a list")
    return [check_face(f, i, (h, w), str(path)) for i, f in enumerate(faces)]


def _read_doc(path: Path) -> dict:
    """A faces file's JSON object with the right ``schema`` (photo or clip); UsageError otherwise."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(f"{path}: cannot read the faces file ({err.strerror or type(err).__name__})") from None
    if len(raw) > _MAX_BYTES:
        raise UsageError(f"{path}: too large for a faces file")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as err:
        detail = f"line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) else "not UTF-8 text"
        raise UsageError(f"{path}: not valid JSON ({detail})", hint="fix the file, or write it again with imnkit faces") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UsageError(f"{path}: not an {SCHEMA} faces file (its \"schema\" is not \"{SCHEMA}\")")
    return doc


def face_entry(face, *, treatment: str | None = None) -> dict:
    """A detected :class:`~imnkit.face.detect.Face` as a faces-file entry (identity null: dealt when masked)."""
    from .face.detect import is_doubtful

    return {"box": file_box(face.box), "points": [[round(float(x), 1), round(float(y), 1)] for x, y in face.points5],
            "detector": face.source, "score": round(float(face.score), 4),
            "treatment": treatment or face.treatment, "identity": None, "review": is_doubtful(face)}


def listed_faces(image: np.ndarray, listed: Sequence[dict], detected: Sequence) -> list[tuple[Any, dict]]:
    """The faces to mask for checked ``listed`` entries: ``(Face, entry)`` pairs, in the file's order.

    An entry whose box overlaps a ``detected`` face (IoU >= 0.5) is that face as detected (its
    landmarks; so an unedited file masks what a plain run masks); any other is fitted in its box
    (:func:`imnkit.face.detect.face_in_box`). Treatment ``"none"`` entries are left out; an
    entry's treatment other than null replaces the face's (``"swap"`` only where 68 landmarks fit).
    """
    from dataclasses import replace

    from .face.detect import TREATMENT_FALLBACK, face_in_box

    out = []
    taken: set[int] = set()
    for entry in listed:
        if entry["treatment"] == "none":
            continue
        box = record_box(entry["box"])
        ious = [0.0 if j in taken else _iou(box, f.box) for j, f in enumerate(detected)]
        if ious and max(ious) >= 0.5:
            j = int(np.argmax(ious))
            taken.add(j)
            face = detected[j]
        else:
            pts = None if entry["points"] is None else np.asarray(entry["points"], np.float32)
            face = face_in_box(image, box, pts)
        want = entry["treatment"]
        if want is not None and not (want == "swap" and face.treatment == TREATMENT_FALLBACK):
            face = replace(face, treatment=want)
        out.append((face, entry))
    return out


def _iou(a: Sequence[int], b: Sequence[int]) -> float:
    iy = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ix = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def check_face(face: Any, index: int, shape: tuple[int, int], where: str = "faces") -> dict:
    """One face entry checked against a photo of ``shape`` (H, W); a complete copy with defaults filled."""
    at = f"{where}: face {index + 1}"
    if not isinstance(face, dict):
        raise UsageError(f"{at}: must be an object with at least a \"box\"")
    unknown = sorted(set(face) - set(FACE_KEYS))
    if unknown:
        raise UsageError(f"{at}: unknown key(s) {', '.join(unknown)} (known: {', '.join(FACE_KEYS)})")
    if "box" not in face:
        raise UsageError(f"{at}: has no \"box\" ([x0, y0, x1, y1] in pixels)")
    out = {k: face.get(k, _DEFAULTS.get(k)) for k in FACE_KEYS}  # in the documented order
    out["box"] = _box(face["box"], shape, at)
    out["points"] = _points(out["points"], at)
    if out["detector"] not in DETECTORS:
        raise UsageError(f"{at}: unknown detector {out['detector']!r} (known: {', '.join(DETECTORS)})")
    score = out["score"]
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score)):
        raise UsageError(f"{at}: \"score\" must be a number or null")
    out["score"] = None if score is None else float(score)
    _check_choices(out, at)
    return out


def _check_choices(out: dict, at: str) -> None:
    """The keys a photo's face and a clip's track share: treatment, identity, review."""
    if out["treatment"] is not None and out["treatment"] not in TREATMENTS:
        raise UsageError(f"{at}: unknown treatment {out['treatment']!r} (known: {', '.join(TREATMENTS)}, or null)")
    if out["identity"] is not None:
        from .face.identities import identity_names

        names = identity_names()
        if out["identity"] not in names:
            raise UsageError(f"{at}: unknown identity {out['identity']!r}", hint="imnkit identities lists the pool")
    if not isinstance(out["review"], bool):
        raise UsageError(f"{at}: \"review\" must be true or false")


def _box(box: Any, shape: tuple[int, int], at: str, what: str = "photo") -> list[int]:
    h, w = shape
    if (not isinstance(box, list) or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
        raise UsageError(f"{at}: \"box\" must be four numbers [x0, y0, x1, y1]")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise UsageError(f"{at}: the box [{x0}, {y0}, {x1}, {y1}] has zero area (it needs x1 > x0 and y1 > y0)")
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise UsageError(f"{at}: the box [{x0}, {y0}, {x1}, {y1}] lies outside the {w}x{h} {what}")
    return [x0, y0, x1, y1]


def _points(points: Any, at: str) -> list[list[float]] | None:
    if points is None:
        return None
    ok = isinstance(points, list) and len(points) == 5 and all(
        isinstance(p, list) and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
        for p in points)
    if not ok:
        raise UsageError(f"{at}: \"points\" must be five [x, y] pairs or null")
    return [[float(x), float(y)] for x, y in points]


# Clips ----------------------------------------------------------------------------------------------
# A clip's faces file lists tracks, not faces (docs/review.md, "Clips"):
#   {"schema": "imnkit.faces/1",
#    "clip": {"name": "clip.mp4", "width": W, "height": H, "frames": N, "sha256": "<frames_digest>"},
#    "tracks": [{"id": 0, "first": 0, "last": 47, "boxes": {"0": [x0, y0, x1, y1], "8": [...], ...},
#                "treatment": null, "identity": null, "review": false}]}
# ``boxes`` holds a box at a few key frames (JSON keys: the frame numbers, from 0, upright frames);
# between them a track's box is interpolated linearly, before its first key frame and after its last
# it is held; a track covers exactly its frames ``first``..``last``.

TRACK_KEYS = ("id", "first", "last", "boxes", "treatment", "identity", "review")


class FramesDigest:
    """sha256 of a clip's decoded frames, fed in order: each frame's upright RGB pixels, row-major,
    as imnkit decodes them (the file's container, timestamps and sound are not part of it)."""

    def __init__(self) -> None:
        import hashlib

        self._sha = hashlib.sha256()
        self.frames = 0
        self.shape: tuple[int, int] | None = None

    def add(self, image: np.ndarray) -> None:
        self._sha.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
        self.frames += 1
        self.shape = (int(image.shape[0]), int(image.shape[1]))

    def facts(self, path: Path | None) -> dict:
        """The file's ``clip`` object."""
        h, w = self.shape or (0, 0)
        return {"name": None if path is None else Path(path).name, "width": w, "height": h,
                "frames": self.frames, "sha256": self._sha.hexdigest()}


def clip_facts(path: Path) -> dict:
    """A clip's ``clip`` object (name, upright size, frame count, frames' digest): decodes every frame."""
    from .video import io

    digest = FramesDigest()
    for image in io.frames(io.probe(path)):
        digest.add(image)
    return digest.facts(path)


def detect_clip_faces(path: Path, *, recipe: str = "mask", sets: Sequence[str] = (), device: str | None = None) -> dict:
    """The faces file of clip ``path``: the tracks the recipe's tracking pass finds (nothing masked).

    Each track lists its box at the tracker's key frames (every ``detect_every`` frames) and at its
    first and last frame, clipped to the frame; identity null (dealt when masked).
    """
    from .recipe import Runner, load_recipe, resolve_recipe_path
    from .video import io
    from .video.mask import track_clip

    runner = Runner(load_recipe(resolve_recipe_path(recipe), sets=list(sets), device=device),
                    options={"allow_no_face": True})
    digest = FramesDigest()
    tracks, tracker = track_clip(runner, io.probe(path), name=False, on_frame=lambda _i, image: digest.add(image))
    facts = digest.facts(path)
    entries = []
    for t in tracks:
        keys = sorted({f for f in t.boxes if f % tracker.every == 0} | {min(t.boxes), max(t.boxes)})
        boxes = {str(f): b for f in keys if (b := _clipped(t.boxes[f], facts)) is not None}
        if boxes:  # a track whose every box lies outside the frame is never masked: not listed
            entries.append({"id": len(entries), "first": min(t.boxes), "last": max(t.boxes), "boxes": boxes,
                            "treatment": None, "identity": None, "review": False})
    return {"schema": SCHEMA, "clip": facts, "tracks": entries}


def _clipped(box: Sequence[int], facts: dict) -> list[int] | None:
    """An imnkit box as a file box clipped to the frame; None when nothing of it is inside."""
    x0, y0, x1, y1 = file_box(box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(facts["width"], x1), min(facts["height"], y1)
    return [x0, y0, x1, y1] if x1 > x0 and y1 > y0 else None


def load_clip_faces_file(path: Path, facts: dict) -> list[dict]:
    """The tracks ``path`` lists for the clip of ``facts`` (:func:`clip_facts`), checked, defaults filled.

    Raises:
        UsageError: not a faces file, a photo's or another clip's, or a track that cannot be (one line each).
    """
    doc, clip = _read_kind(Path(path), "clip", "tracks")
    if any(clip.get(k) != facts[k] for k in ("width", "height", "frames", "sha256")):
        raise UsageError(f"{path}: the faces file is for another clip (its frames' digest differs)",
                         hint="run imnkit faces on this clip to list its tracks")
    tracks = doc.get("tracks")
    if not isinstance(tracks, list):
        raise UsageError(f"{path}: \"tracks\" must be a list")
    out = [check_track(t, i, (facts["height"], facts["width"]), facts["frames"], str(path)) for i, t in enumerate(tracks)]
    ids = [t["id"] for t in out]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise UsageError(f"{path}: track id {twice[0]} is listed twice (ids must differ)")
    return out


def check_track(track: Any, index: int, shape: tuple[int, int], frames: int, where: str = "tracks") -> dict:
    """One track entry checked against a clip of ``frames`` frames of ``shape`` (H, W); defaults filled.

    ``boxes`` is required; ``first`` and ``last`` default to its first and last key frame.
    """
    at = f"{where}: track {index + 1}"
    if not isinstance(track, dict):
        raise UsageError(f"{at}: must be an object with \"id\" and \"boxes\"")
    unknown = sorted(set(track) - set(TRACK_KEYS))
    if unknown:
        raise UsageError(f"{at}: unknown key(s) {', '.join(unknown)} (known: {', '.join(TRACK_KEYS)})")
    if not _is_int(track.get("id")) or track["id"] < 0:
        raise UsageError(f"{at}: \"id\" must be a whole number >= 0")
    at = f"{where}: track id {track['id']}"
    raw = track.get("boxes")
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"{at}: \"boxes\" must map key frames to boxes, e.g. {{\"0\": [x0, y0, x1, y1]}}")
    boxes: dict[int, list[int]] = {}
    for key, box in raw.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            raise UsageError(f"{at}: the key frame {key!r} is not a frame number")
        f = int(key)
        if f >= frames:
            raise UsageError(f"{at}: frame {f} is out of range (the clip has {frames} frames: 0 to {frames - 1})")
        boxes[f] = _box(box, shape, f"{at}, frame {f}", "frame")
    out = {"id": track["id"], "first": track.get("first", min(boxes)), "last": track.get("last", max(boxes))}
    for k in ("first", "last"):
        if not _is_int(out[k]):
            raise UsageError(f"{at}: \"{k}\" must be a frame number (a whole number from 0)")
        if not 0 <= out[k] < frames:
            raise UsageError(f"{at}: \"{k}\" {out[k]!r} is out of range (the clip has {frames} frames: 0 to {frames - 1})")
    if out["first"] > out["last"]:
        raise UsageError(f"{at}: \"first\" {out['first']} comes after \"last\" {out['last']}")
    outside = [f for f in boxes if not out["first"] <= f <= out["last"]]
    if outside:
        raise UsageError(f"{at}: the box at frame {outside[0]} lies outside its frames {out['first']} to {out['last']}")
    out["boxes"] = {str(f): boxes[f] for f in sorted(boxes)}
    out.update({k: track.get(k, _DEFAULTS[k]) for k in ("treatment", "identity", "review")})
    _check_choices(out, at)
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def track_box(entry: dict, index: int) -> tuple[int, int, int, int]:
    """A checked track entry's box at frame ``index`` as imnkit's ``(y0, x0, y1, x1)``: interpolated
    linearly between its key frames, held before the first and after the last."""
    keys = sorted(int(f) for f in entry["boxes"])
    if index <= keys[0] or index >= keys[-1]:
        return record_box(entry["boxes"][str(keys[0] if index <= keys[0] else keys[-1])])
    hi = next(k for k in keys if k >= index)
    lo = max(k for k in keys if k <= index)
    if lo == hi:
        return record_box(entry["boxes"][str(lo)])
    t = (index - lo) / (hi - lo)
    a, b = np.asarray(entry["boxes"][str(lo)], np.float64), np.asarray(entry["boxes"][str(hi)], np.float64)
    return record_box([int(round(v)) for v in a + t * (b - a)])
