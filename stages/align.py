"""align stage: find faces, their landmarks and the similarity transform to the ArcFace template.

Contract:
    requires  image.protected     (H, W, 3) uint8
    provides  faces.boxes         int64 (N, 4) y0, x0, y1, x1 (exclusive ends), largest face first
              faces.scores        float32 (N,) detector scores
              faces.landmarks     float32 (N, 68, 2) (x, y) photo pixels
              faces.points5       float32 (N, 5, 2) eye centres, nose tip, mouth corners (x, y)
              faces.affine        float32 (N, 2, 3) photo pixel (x, y) -> 112 px ArcFace template pixel
              meta faces.skipped  [{"box": [...], "reason": "..."}] detections left out, and why
              meta faces.treatment  per face: "swap" (dlib's 68 landmarks) or "fallback" (landmarks fitted
                                  from CenterFace's 5 points; the swap stage picks the best Mask that works);
                                  a faces file may also ask for "warp5" or "obfuscate"
              meta faces.source   per face: the detector that found it ("dlib", "centerface", or "user": a box
                                  of the faces file that no detection matched)
              meta faces.listed   the photo's faces as faces-file entries (imnkit.faces_file): every face
                                  found, doubtful ones with "review": true; with a faces file, its entries
              meta faces.identity per face: the pool identity the faces file names for it, or null
              meta report.faces   per listed face: box [x0, y0, x1, y1], detector, score, review, masked (--json)

Faces file: with the run option ``faces`` = {input path: checked entries} (``imnkit run --faces``, the
review page) the faces are exactly the entries listed for this input (imnkit.faces_file.listed_faces):
a listed box a detection matches is that detection, any other gets landmarks fitted in it; a face not
listed is left as it is. Doubtful detections (imnkit.face.detect.REVIEW_BELOW) are masked or left as
they are by ``doubtful``.

Convention: ``faces.affine`` maps a source pixel (x, y, 1) to template pixels, as cv2.warpAffine's M.
A photo with no face is a NoFaceError (exit code 3) unless ``allow_no_face`` (or --allow-no-face),
which lets it pass with N = 0 and a note.
"""

from __future__ import annotations

from typing import Any

from imnkit.bundle import Bundle, tensor_to_image
from imnkit.errors import NoFaceError, UsageError
from imnkit.stage import Param, Stage, StageContext, register_stage


def parse_faces(text: str) -> str | int:
    if text in ("all", "largest"):
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"align: 'faces' must be all, largest or a positive number, got '{text}'")
    return n


@register_stage
class AlignStage(Stage):
    name = "align"
    summary = "Find every face (dlib HOG + CenterFace, 68 landmarks), 5 points and the similarity to the ArcFace 112 template"
    requires = ("image.protected",)
    provides = ("faces.boxes", "faces.scores", "faces.landmarks", "faces.points5", "faces.affine")
    params = (
        Param("faces", str, "all", "which faces: all, largest, or N (the N largest)"),
        Param("threshold", float, -0.3, "detector score threshold (lower finds more faces)", min=-2.0, max=2.0),
        Param("min_size", int, 32, "smallest face box side in pixels; smaller faces are skipped", min=8),
        Param("upsample", int, 0, "HOG upsampling passes (each finds faces half as big, ~4x slower); with the union "
              "detector CenterFace finds the small faces (0 and 1 found the same 108 reference faces), "
              "use 1 with detector=dlib", min=0, max=3),
        Param("max_side", int, 1024, "longest side of the working image the detector runs on", min=64),
        Param("try_rotations", bool, True, "when nothing natural is found upright, try the photo turned 90/270/180 degrees"),
        Param("detector", str, "union", "union (dlib HOG + CenterFace, shipped) or dlib (HOG alone)", choices=("union", "dlib")),
        Param("centerface_threshold", float, 0.5, "CenterFace score a face needs (lower finds more faces)", min=0.05, max=0.99),
        Param("allow_no_face", bool, False, "let a photo with no face pass through unchanged instead of failing"),
        Param("doubtful", str, "confirm", "detections under the review score (docs/review.md, flagged \"review\"): confirm "
              "(mask those a second look confirms, leave the others as they are), mask, or leave", choices=("confirm", "mask", "leave")),
    )

    def uses_torch(self, params, options):
        return False  # dlib and OpenCV

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        from imnkit.face.detect import detect_faces
        from imnkit.face.records import store_faces

        image = tensor_to_image(bundle.require("image.protected", stage=self.name), "image.protected")
        listed = (ctx.options.get("faces") or {}).get(bundle.source)  # the faces file's entries for this input
        if listed is None and min(image.shape[:2]) < max(8, params["min_size"]):
            self._no_face(bundle, params, ctx, f" (the image is {image.shape[1]}x{image.shape[0]}, too small to hold a face)")
            store_faces(bundle, [])
            return
        det = detect_faces(image, upsample=params["upsample"], threshold=params["threshold"],
                           min_size=params["min_size"], faces=parse_faces(params["faces"]),
                           max_side=params["max_side"], try_rotations=params["try_rotations"],
                           detector=params["detector"], centerface_threshold=params["centerface_threshold"])
        pairs, entries = self._choose(image, det.faces, listed, params["doubtful"])
        faces = [f for f, _ in pairs]
        bundle.meta["faces.skipped"] = [{"box": list(s.box), "reason": s.reason} for s in det.skipped]
        bundle.meta["faces.rotation"] = det.rotation
        bundle.meta["faces.treatment"] = [f.treatment for f in faces]
        bundle.meta["faces.source"] = [f.source for f in faces]
        bundle.meta["faces.listed"] = entries
        if any(e["identity"] for _, e in pairs):
            bundle.meta["faces.identity"] = [e["identity"] for _, e in pairs]
        masked = {id(e) for _, e in pairs}
        bundle.meta.setdefault("report", {})["faces"] = [
            {"box": e["box"], "detector": e["detector"], "score": e["score"], "review": e["review"],
             "masked": id(e) in masked} for e in entries]
        left = [e for e in entries if e["review"] and id(e) not in masked]
        if left:
            bundle.meta.setdefault("notes", []).append(
                f"{len(left)} doubtful detection(s) left as they are: check them (imnkit faces, docs/review.md)")
        if listed is not None and not faces:
            bundle.meta.setdefault("notes", []).append("the faces file lists no face to mask: passed through unchanged")
        elif not faces:
            reasons = sorted({s.reason for s in det.skipped})
            why = f" ({len(det.skipped)} detection(s) skipped: {', '.join(reasons)})" if reasons else ""
            if left:
                why = f" ({len(left)} doubtful detection(s) left as they are: list them with imnkit faces){why}"
            self._no_face(bundle, params, ctx, why)
        store_faces(bundle, faces)

    @staticmethod
    def _choose(image, detected, listed, doubtful: str):
        """``((Face, entry) pairs to mask, every entry listed)``: from the faces file when there is one."""
        from imnkit.face.detect import confirmed, is_doubtful
        from imnkit.faces_file import face_entry, listed_faces

        if listed is not None:
            return listed_faces(image, listed, detected), list(listed)

        def leave(f) -> bool:  # a doubtful detection left as it is (listed with treatment none)
            return is_doubtful(f) and (doubtful == "leave" or (doubtful == "confirm" and not confirmed(image, f)))

        entries = [face_entry(f, treatment="none" if leave(f) else None) for f in detected]
        return [(f, e) for f, e in zip(detected, entries) if e["treatment"] != "none"], entries

    @staticmethod
    def _no_face(bundle: Bundle, params: dict[str, Any], ctx: StageContext, why: str) -> None:
        if not (params["allow_no_face"] or ctx.options.get("allow_no_face")):
            where = bundle.meta.get("source.name", "the photo")
            raise NoFaceError(f"no face found in {where}{why}",
                              hint="lower --set align.centerface_threshold / threshold / min_size, or pass --allow-no-face to keep it unchanged")
        bundle.meta.setdefault("notes", []).append(f"no face found{why}: passed through unchanged")
