"""Faces tracked across the frames of a clip: detection every few frames, landmarks in between.

Detection (the align stage: dlib HOG + CenterFace) costs ~1 s per 640x640 frame on these CPUs, the
68-point landmark predictor ~3 ms. So detection runs on *key frames* (every ``every`` frames) and each
tracked face is followed from frame to frame by re-fitting its landmarks in its box, moved by how
the landmarks moved. At a key frame, detections are matched to tracks (IoU, else centre distance):

- a matched track takes the detection's geometry (a *hit*);
- a track without a detection keeps the followed geometry and is still masked (a *miss*: counted);
  after ``max_missed`` key frames in a row without a hit it ends (its followed frames before that
  key frame stay masked: privacy before looks);
- a detection without a track starts one, and is followed *backwards* over the frames since the last
  key frame (kept in a small buffer), so a face that came in between two key frames is masked from
  the frame it came in (or a few frames earlier: again privacy before looks).

After the pass, each track's landmarks and boxes are smoothed over time (a Gaussian over a few
frames) so the Mask does not jitter.

Convention: boxes are (y0, x0, y1, x1) with exclusive ends, landmarks (68, 2) float32 (x, y) pixels
of the upright frame, as in :mod:`imnkit.face.detect`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from imnkit.face.align import five_points
from imnkit.face.detect import Face, fit_landmarks, hog_like_box, make_face

Box = tuple[int, int, int, int]
MATCH_IOU = 0.3  # a detection overlapping a track this much is the same face
MATCH_CENTRE = 0.5  # ... or one whose centre is closer than this times the track's box side
MIN_INSIDE = 0.3  # a followed face with less of its box inside the frame has left it


@dataclass
class Track:
    """One person across frames: per-frame geometry, key-frame hits and the Mask identity pinned to it."""

    id: int
    identity: str | None = None
    landmarks: dict[int, np.ndarray] = field(default_factory=dict)
    boxes: dict[int, Box] = field(default_factory=dict)
    treatment: dict[int, str] = field(default_factory=dict)
    hits: set[int] = field(default_factory=set)
    missed: set[int] = field(default_factory=set)  # key frames inside the track where detection missed it
    backfilled: int = 0  # frames before its first detection, followed backwards
    misses: int = 0  # key frames in a row without a hit
    active: bool = True

    @property
    def last(self) -> int:
        return max(self.boxes)

    def put(self, index: int, landmarks: np.ndarray, box: Box, treatment: str) -> None:
        self.landmarks[index], self.boxes[index], self.treatment[index] = landmarks, box, treatment

    def drop(self, index: int) -> None:
        for d in (self.landmarks, self.boxes, self.treatment):
            d.pop(index, None)
        self.missed.discard(index)


@dataclass
class TrackStats:
    """What tracking did over a clip (JSON-able counts; no pixels)."""

    frames: int = 0
    key_frames: int = 0
    tracks: int = 0
    hits: int = 0
    missed: int = 0  # key frames inside a track where detection missed: masked with the track's geometry
    followed: int = 0  # face-frames whose geometry came from the landmark follower
    backfilled: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ih = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre_score(a: Box, b: Box) -> float:
    side = max(a[2] - a[0], a[3] - a[1], 1)
    d = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return max(0.0, 1 - d / (MATCH_CENTRE * side))


def match(tracks: Sequence[Box], faces: Sequence[Box]) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (track index, face index): best IoU first, then nearest centres."""
    scores = []
    for i, t in enumerate(tracks):
        for j, f in enumerate(faces):
            o = iou(t, f)
            s = 1 + o if o >= MATCH_IOU else _centre_score(t, f)
            if s > 0:
                scores.append((s, i, j))
    pairs, used_t, used_f = [], set(), set()
    for _, i, j in sorted(scores, reverse=True):
        if i not in used_t and j not in used_f:
            pairs.append((i, j))
            used_t.add(i)
            used_f.add(j)
    return pairs


def follow(image: np.ndarray, landmarks: np.ndarray, box: Box) -> tuple[np.ndarray, Box] | None:
    """The face of the previous frame (``landmarks`` in ``box``) found again in ``image``; None if it left.

    The predictor starts from the box dlib's HOG detector would give the previous landmarks (the
    track's own box may be CenterFace's head box, in which it puts the mouth on the nose); the box
    is moved and scaled as they moved, and the landmarks are fitted again from their new HOG-like
    box (two ~3 ms predictor runs).
    """
    h, w = image.shape[:2]
    first = fit_landmarks(image, hog_like_box(five_points(landmarks)))
    shift = first.mean(axis=0) - landmarks.mean(axis=0)
    scale = float(np.clip(_spread(first) / max(_spread(landmarks), 1e-3), 0.8, 1.25))
    cy, cx = (box[0] + box[2]) / 2 + shift[1], (box[1] + box[3]) / 2 + shift[0]
    hh, hw = (box[2] - box[0]) * scale / 2, (box[3] - box[1]) * scale / 2
    moved = (int(round(cy - hh)), int(round(cx - hw)), int(round(cy + hh)), int(round(cx + hw)))
    inside = max(0, min(h, moved[2]) - max(0, moved[0])) * max(0, min(w, moved[3]) - max(0, moved[1]))
    if inside < MIN_INSIDE * max(1, (moved[2] - moved[0]) * (moved[3] - moved[1])):
        return None
    return fit_landmarks(image, hog_like_box(five_points(first))), moved


def _spread(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))


class FaceTracker:
    """Feed it the frames in order; :meth:`finish` gives the tracks, smoothed.

    ``detect(image) -> faces``: the key-frame detector. ``name(image, faces) -> identities``: called once
    when faces start tracks (all the new faces of a key frame at once, so they get different Masks).
    """

    def __init__(self, detect: Callable[[np.ndarray], list[Face]],
                 name: Callable[[np.ndarray, list[Face]], list[str | None]], *, every: int = 8, max_missed: int = 2):
        self.detect, self.name = detect, name
        self.every, self.max_missed = max(1, every), max(1, max_missed)
        self.tracks: list[Track] = []
        self.stats = TrackStats()
        self._since_key: deque[tuple[int, np.ndarray]] = deque(maxlen=max(0, self.every - 1))

    def feed(self, index: int, image: np.ndarray) -> None:
        """Track the faces into frame ``index`` (frames must come in order, from 0)."""
        self.stats.frames = index + 1
        for t in self.tracks:
            if t.active and t.last == index - 1:
                self._follow(t, index, image)
        if index % self.every:
            if self.every > 1:
                self._since_key.append((index, image))
            return
        self.stats.key_frames += 1
        faces = self.detect(image)
        active = [t for t in self.tracks if t.active and index in t.boxes]
        pairs = match([t.boxes[index] for t in active], [f.box for f in faces])
        for i, j in pairs:
            t, f = active[i], faces[j]
            t.put(index, np.asarray(f.landmarks, np.float32), f.box, f.treatment)
            t.hits.add(index)
            t.misses = 0
        hit = {i for i, _ in pairs}
        for i, t in enumerate(active):
            if i not in hit:
                t.misses += 1
                t.missed.add(index)
                if t.misses >= self.max_missed:  # gone: this key frame shows it is not there
                    t.drop(index)
                    t.active = False
        new = [faces[j] for j in range(len(faces)) if j not in {j for _, j in pairs}]
        if new:
            self._start(index, image, new)
        self._since_key.clear()

    def _follow(self, t: Track, index: int, image: np.ndarray) -> None:
        prev = index - 1
        found = follow(image, t.landmarks[prev], t.boxes[prev])
        if found is None:
            t.active = False
            return
        t.put(index, found[0], found[1], t.treatment[prev])

    def _start(self, index: int, image: np.ndarray, faces: list[Face]) -> None:
        names = self.name(image, faces)
        for f, name in zip(faces, names):
            t = Track(id=len(self.tracks), identity=name)
            t.put(index, np.asarray(f.landmarks, np.float32), f.box, f.treatment)
            t.hits.add(index)
            lm, box = t.landmarks[index], f.box
            for j, frame in reversed(self._since_key):  # the frames since the last key frame, backwards
                found = follow(frame, lm, box)
                if found is None:
                    break
                lm, box = found
                t.put(j, lm, box, f.treatment)
                t.backfilled += 1
            self.tracks.append(t)

    def finish(self, sigma: float = 1.0) -> list[Track]:
        """The tracks with their geometry smoothed over time, and the stats filled in."""
        kept = [t for t in self.tracks if t.boxes]
        for t in kept:
            smooth(t, sigma)
        s = self.stats
        s.tracks = len(kept)
        s.hits = sum(len(t.hits) for t in kept)
        s.missed = sum(len(t.missed) for t in kept)
        s.backfilled = sum(t.backfilled for t in kept)
        s.followed = sum(len(t.boxes) - len(t.hits) for t in kept)
        return kept


def smooth(track: Track, sigma: float) -> None:
    """Gaussian-smooth a track's landmarks and boxes over time (in place); ``sigma`` in frames."""
    if sigma <= 0 or len(track.boxes) < 3:
        return
    idx = sorted(track.boxes)
    radius = max(1, int(round(2 * sigma)))
    lms = np.stack([track.landmarks[i] for i in idx]).astype(np.float64)
    boxes = np.array([track.boxes[i] for i in idx], np.float64)
    out_lm, out_box = np.empty_like(lms), np.empty_like(boxes)
    for k in range(len(idx)):
        lo, hi = max(0, k - radius), min(len(idx), k + radius + 1)
        wts = np.exp(-0.5 * ((np.arange(lo, hi) - k) / sigma) ** 2)
        wts /= wts.sum()
        out_lm[k] = np.tensordot(wts, lms[lo:hi], axes=1)
        out_box[k] = wts @ boxes[lo:hi]
    for k, i in enumerate(idx):
        track.landmarks[i] = out_lm[k].astype(np.float32)
        track.boxes[i] = tuple(int(round(v)) for v in out_box[k])


def faces_at(tracks: Sequence[Track], index: int, shape: tuple[int, int]) -> tuple[list[Face], list[str | None]]:
    """The faces to mask in frame ``index`` (one per track present) and each one's pinned identity."""
    faces, names = [], []
    for _, t, box in _present(tracks, index, shape):
        faces.append(make_face(t.landmarks[index], box, 1.0, treatment=t.treatment[index], source="track"))
        names.append(t.identity)
    return faces, names


def region_tracks(tracks: Sequence[Track], index: int, shape: tuple[int, int],
                  regions: Sequence[Sequence[int]]) -> list[list[int]]:
    """For each hidden region of frame ``index``, the tracks (their numbers: positions in ``tracks``)
    whose face it holds: those whose box centre lies in it. Regions do not overlap (the embed stage
    merges overlapping ones), so a face is in one region; a merged region holds several."""
    centres = [(n, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2) for n, _, box in _present(tracks, index, shape)]
    return [[n for n, cy, cx in centres if y0 <= cy < y1 and x0 <= cx < x1] for y0, x0, y1, x1 in regions]


def _present(tracks: Sequence[Track], index: int, shape: tuple[int, int]):
    """(number, track, box clipped to the frame) of every track with a face in frame ``index``."""
    h, w = shape
    for n, t in enumerate(tracks):
        if index not in t.boxes:
            continue
        y0, x0, y1, x1 = t.boxes[index]
        box = (max(0, y0), max(0, x0), min(h, y1), min(w, x1))
        if box[2] > box[0] and box[3] > box[1]:
            yield n, t, box


def match_listed(tracks: Sequence[Track], wanted: Sequence[dict[int, Box]], at_least: float = 0.5) -> list[int | None]:
    """For each ``wanted`` track (its boxes at a few key frames: a faces file's entry), the tracked
    track it is, or None (drawn by hand): the one whose boxes overlap its key-frame boxes most, by mean
    IoU over those frames (a frame the track lacks counts 0), if that is at least ``at_least``. Each
    tracked track is taken once, best pairs first (as :func:`imnkit.faces_file.listed_faces` for photos)."""
    scores = []
    for k, keys in enumerate(wanted):
        for j, t in enumerate(tracks):
            s = sum(iou(b, t.boxes[f]) if f in t.boxes else 0.0 for f, b in keys.items()) / max(1, len(keys))
            if s >= at_least:
                scores.append((s, k, j))
    out: list[int | None] = [None] * len(wanted)
    used: set[int] = set()
    for _, k, j in sorted(scores, reverse=True):
        if out[k] is None and j not in used:
            out[k] = j
            used.add(j)
    return out


def restricted(track: Track, first: int, last: int, track_id: int) -> Track:
    """A copy of ``track`` holding only its frames ``first``..``last`` (a faces file may shorten it)."""
    keep = [i for i in track.boxes if first <= i <= last]
    return Track(id=track_id, identity=track.identity, landmarks={i: track.landmarks[i] for i in keep},
                 boxes={i: track.boxes[i] for i in keep}, treatment={i: track.treatment[i] for i in keep},
                 hits={i for i in track.hits if first <= i <= last}, missed={i for i in track.missed if first <= i <= last},
                 active=False)
