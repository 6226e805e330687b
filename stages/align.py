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
                                  from CenterFace's 5 points; the swap stage picks the best Mask that works)
              meta faces.source   per face: the detector that found it ("dlib" or "centerface")

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
    )

    def uses_torch(self, params, options):
        return False  # dlib and OpenCV

    def run(self, bundle: Bundle, params: dict[str, Any], ctx: StageContext) -> None:
        from imnkit.face.detect import detect_faces
        from imnkit.face.records import store_faces

        image = tensor_to_image(bundle.require("image.protected", stage=self.name), "image.protected")
        if min(image.shape[:2]) < max(8, params["min_size"]):
            self._no_face(bundle, params, ctx, f" (the image is {image.shape[1]}x{image.shape[0]}, too small to hold a face)")
            store_faces(bundle, [])
            return
        det = detect_faces(image, upsample=params["upsample"], threshold=params["threshold"],
                           min_size=params["min_size"], faces=parse_faces(params["faces"]),
                           max_side=params["max_side"], try_rotations=params["try_rotations"],
                           detector=params["detector"], centerface_threshold=params["centerface_threshold"])
        faces = det.faces
        bundle.meta["faces.skipped"] = [{"box": list(s.box), "reason": s.reason} for s in det.skipped]
        bundle.meta["faces.rotation"] = det.rotation
        bundle.meta["faces.treatment"] = [f.treatment for f in faces]
        bundle.meta["faces.source"] = [f.source for f in faces]
        if not faces:
            reasons = sorted({s.reason for s in det.skipped})
            self._no_face(bundle, params, ctx, f" ({len(det.skipped)} detection(s) skipped: {', '.join(reasons)})" if reasons else "")
        store_faces(bundle, faces)

    @staticmethod
    def _no_face(bundle: Bundle, params: dict[str, Any], ctx: StageContext, why: str) -> None:
        if not (params["allow_no_face"] or ctx.options.get("allow_no_face")):
            where = bundle.meta.get("source.name", "the photo")
            raise NoFaceError(f"no face found in {where}{why}",
                              hint="lower --set align.centerface_threshold / threshold / min_size, or pass --allow-no-face to keep it unchanged")
        bundle.meta.setdefault("notes", []).append(f"no face found{why}: passed through unchanged")
