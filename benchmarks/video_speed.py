"""Video speed and peak memory: `imnkit run` and `imnkit extract` on a generated clip, per frame size.

    nice -n 10 python benchmarks/video_speed.py --photo ../shared/data/faces/portrait_01.jpg \
        [--sizes 640x640,1280x720] [--frames 48] [--set embed.method=detached] [--json OUT]

For each size, a child process makes a clip (a slow pan over the photo's face, H.264, 24 fps, AAC tone),
masks it with the default recipe in process (models loaded once, as in a batch) and extracts it, and
reports frames per second of the whole run (both passes: tracking, then masking and encoding), of
each pass, of extraction, the CPU seconds per frame of the run (all threads: less sensitive than wall
time to other processes on a shared machine), and its peak resident memory (ru_maxrss: the child's
whole life, models included).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_clip(path: Path, photo: Path, width: int, height: int, frames: int, rate: int = 24) -> None:
    """A pan over the face of ``photo`` (kept inside the frame), H.264 yuv420p, with a 440 Hz tone."""
    import av
    import numpy as np
    from PIL import Image

    from imnkit.face.detect import detect_faces
    from imnkit.imageio import load_image

    img = load_image(photo)
    y0, x0, y1, x1 = detect_faces(img, detector="dlib", try_rotations=False).faces[0].box
    cy, cx, side = (y0 + y1) / 2, (x0 + x1) / 2, 2.4 * max(y1 - y0, x1 - x0)
    ch, cw = int(side * height / max(width, height)), int(side * width / max(width, height))
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=rate)
    v.width, v.height, v.pix_fmt = width, height, "yuv420p"
    a = out.add_stream("aac", rate=22050, layout="mono")
    for i in range(frames):
        t = i / max(frames - 1, 1) - 0.5
        top, left = int(cy - ch * (0.5 + 0.05 * t)), int(cx - cw * (0.5 + 0.15 * t))
        crop = Image.fromarray(img[max(0, top):top + ch, max(0, left):left + cw]).resize((width, height))
        frame = av.VideoFrame.from_ndarray(np.asarray(crop), format="rgb24")
        frame.pts = i
        out.mux(v.encode(frame))
    out.mux(v.encode(None))
    n = 22050 * frames // rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 22050)).astype(np.float32)
    for k in range(0, n, 1024):
        af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
        af.sample_rate, af.pts = 22050, k
        out.mux(a.encode(af))
    out.mux(a.encode(None))
    out.close()


def one(size: str, photo: Path, frames: int, sets: list[str], every: int) -> dict:
    """Measure one size in this process (the parent runs each size in its own child)."""
    from imnkit.api import extract_file
    from imnkit.recipe import Runner, load_recipe
    from imnkit.video.mask import mask_video

    width, height = (int(v) for v in size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "clip.mp4"
        make_clip(clip, photo, width, height, frames)
        runner = Runner(load_recipe(REPO / "recipes" / "mask.toml", sets=sets, device="cpu"),
                        options={"detect_every": every})
        t0, c0 = time.perf_counter(), time.process_time()
        result = mask_video(runner, clip, Path(d) / "out")
        run_s, run_cpu = time.perf_counter() - t0, time.process_time() - c0
        if result.status != "ok":
            raise SystemExit(f"{size}: {result.message}")
        t0 = time.perf_counter()
        extract_file(Path(d) / "out" / "clip.masked.mkv", Path(d) / "out" / "clip.aux.safetensors", Path(d) / "rec.mkv")
        extract_s = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size for p in (clip, Path(d) / "out" / "clip.masked.mkv", Path(d) / "out" / "clip.aux.safetensors")}
    video = result.report["video"]
    secs = video["seconds"]
    return {"size": size, "frames": video["frames"], "detect_every": every, "sets": sets,
            "run_frames_per_s": round(frames / run_s, 2),
            "run_cpu_s_per_frame": round(run_cpu / frames, 3),  # all threads; less sensitive to other load
            "tracking_frames_per_s": round(frames / secs["tracking"], 2),
            "masking_frames_per_s": round(frames / secs["masking"], 2),
            "extract_frames_per_s": round(frames / extract_s, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "tracking": video["tracking"], "bytes": sizes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=REPO.parent / "shared" / "data" / "faces" / "portrait_01.jpg")
    ap.add_argument("--sizes", default="640x640,1280x720")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--detect-every", type=int, default=8)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.photo, args.frames, args.sets, args.detect_every)))
        return
    rows = []
    for size in args.sizes.split(","):
        cmd = [sys.executable, __file__, "--one", size, "--photo", str(args.photo), "--frames", str(args.frames),
               "--detect-every", str(args.detect_every)] + [a for s in args.sets for a in ("--set", s)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"{size} failed")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{size}: run {r['run_frames_per_s']} frames/s, {r['run_cpu_s_per_frame']} CPU s/frame (tracking {r['tracking_frames_per_s']}, masking "
              f"{r['masking_frames_per_s']}), extract {r['extract_frames_per_s']} frames/s, peak {r['peak_rss_mib']} MiB",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
