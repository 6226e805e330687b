"""Reading photos and writing PNGs safely.

Reading: JPEG, PNG, WebP and TIFF (whatever Pillow decodes); the EXIF orientation is applied; RGBA
(alpha dropped), grayscale, 16-bit and CMYK are converted to 8-bit RGB explicitly; images above
:data:`MAX_PIXELS` are refused before decoding.

Writing: 8-bit RGB PNG, metadata stripped unless asked to keep it, written through
:mod:`imnkit.safefile` (a random temporary file created exclusively with the output's mode, then
renamed into place), so a failed run never leaves a half-written file and nobody sharing the folder
can make imnkit write into their file or widen a private file's mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import InputError, OutputError
from .safefile import PRIVATE, output_path, refuse_symlink, write_file

#: Largest image accepted, in pixels (a decompression-bomb guard; 100 MP covers every camera).
MAX_PIXELS = 100_000_000

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")

# Never decode a truncated file into a half-grey picture: truncation is an error.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# imnkit checks the pixel count itself (MAX_PIXELS) before decoding, with its own message.
Image.MAX_IMAGE_PIXELS = None


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _to_rgb8(img: Image.Image, background: tuple[int, int, int] | None = None) -> np.ndarray:
    """Convert any decoded mode to an (H, W, 3) uint8 RGB array (see :func:`load_image` for ``background``)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grayscale: scale the full range down to 8 bits.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        if background is not None:
            flat = Image.new("RGBA", img.size, (*background, 255))
            flat.alpha_composite(img)
            return np.array(flat.convert("RGB"))
        # By default alpha is dropped, not composited: the colour under transparent pixels is kept
        # as is, so that a photo with an alpha channel keeps its real pixels.
        return np.array(np.asarray(img)[..., :3])  # a writable, contiguous copy
    if mode == "RGB":
        return np.array(img)
    # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX ...: Pillow's own conversion (CMYK uses its ICC-less formula).
    return np.array(img.convert("RGB"))


def load_image(path: str | os.PathLike, *, background: tuple[int, int, int] | None = None,
               data: bytes | None = None) -> np.ndarray:
    """Read a photo as an (H, W, 3) uint8 RGB array with its EXIF orientation applied.

    ``background``: composite transparent pixels onto this RGB colour instead of dropping the alpha
    channel (the pipeline keeps the pixels under the alpha; face detection benchmarks see the photo
    as a viewer shows it, on white).

    ``data``: the file's bytes, already read (a distributed engine reads them elsewhere); ``path`` then
    only names the photo in messages.

    Raises:
        InputError: the file is missing, empty, not an image, truncated or too large.
    """
    if data is None:
        path = Path(path)  # with ``data``, ``path`` may be a URL (imnkit.engines.remote.Url): a name only
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an image")
    if (len(data) if data is not None else path.stat().st_size) == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(
                    f"{path}: {w}x{h} is {w * h / 1e6:.0f} MP, above the {MAX_PIXELS / 1e6:.0f} MP limit",
                    hint="downscale the photo first",
                )
            if w < 1 or h < 1:
                raise InputError(f"{path}: the image has no pixels ({w}x{h})")
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb8(img, background)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read (JPEG, PNG, WebP, TIFF)") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: refused as a decompression bomb (too many pixels)") from None
    except (OSError, SyntaxError, ValueError) as err:
        # Pillow reports truncation as OSError("image file is truncated ...") or "broken data stream".
        reason = "truncated or corrupt" if "trunc" in str(err).lower() or "broken" in str(err).lower() else "unreadable"
        raise InputError(f"{path}: the image is {reason}") from None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False, inputs: tuple = (),
                  mode: int = PRIVATE) -> Iterator[Path]:
    """Yield a temporary path for ``path`` (:func:`imnkit.safefile.output_path`); on success it is
    renamed onto ``path`` with mode ``mode`` (0600 unless told).

    The temporary file is removed if the body raises, so no partial output is ever left.

    Raises:
        OutputError: ``path`` is one of ``inputs``, exists and ``overwrite`` is false, is a symbolic
            link, or its folder cannot be written.
    """
    path = Path(path)
    check_output_path(path, overwrite=overwrite, inputs=inputs)
    try:
        with output_path(path, mode=mode) as tmp:
            yield tmp
    except OSError as err:
        raise OutputError(f"{path}: the write failed ({err.strerror or err}); nothing was written") from None


def check_output_path(path: Path, *, overwrite: bool, inputs: tuple = ()) -> None:
    """Refuse to overwrite an input, an existing output unless ``overwrite``, or to write through a link."""
    refuse_symlink(path)
    resolved = Path(path).resolve()
    for inp in inputs:
        if Path(inp).resolve() == resolved:
            raise OutputError(f"{path}: refusing to overwrite an input file", hint="choose another output name")
    if resolved.exists() and not overwrite:
        raise OutputError(f"{path}: already exists", hint="pass --overwrite to replace it")


def encode_png(image: np.ndarray, *, metadata: dict[str, str] | None = None, exif: bytes | None = None) -> bytes:
    """Encode an (H, W, 3) uint8 array as PNG bytes: no EXIF/ICC unless ``exif`` is given."""
    import io

    from PIL import PngImagePlugin

    check_rgb8(image, "image")
    info = None
    if metadata:
        info = PngImagePlugin.PngInfo()
        for k, v in metadata.items():
            info.add_text(k, v)
    buf = io.BytesIO()
    extra = {"exif": exif} if exif else {}
    # Level 1: a 1024² portrait encodes in 0.13-0.15 s (level 3: 0.19-0.24 s, level 6: 0.6 s) for 2.4 %
    # more bytes than level 3 and 7 % more than 6; every run and extract writes one.
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info, compress_level=1, **extra)
    return buf.getvalue()


def save_png(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    overwrite: bool = False,
    inputs: tuple = (),
    metadata: dict[str, str] | None = None,
    exif: bytes | None = None,
    mode: int = PRIVATE,
) -> Path:
    """Write an (H, W, 3) uint8 RGB array as a PNG atomically with mode ``mode``; returns the path.

    0600 unless told: a PNG written here is a recovered photo (the original faces); pass
    :data:`imnkit.safefile.SHAREABLE` for a photo meant to be shared.
    """
    data = encode_png(image, metadata=metadata, exif=exif)
    check_output_path(Path(path), overwrite=overwrite, inputs=inputs)
    try:
        return write_file(path, data, mode=mode)
    except OSError as err:
        raise OutputError(f"{path}: the write failed ({err.strerror or err}); nothing was written") from None


BT601_WEIGHTS = (0.299, 0.587, 0.114)  # luma from RGB (the Y the measures and the sharpening use)


def pixels_digest(image: np.ndarray) -> str:
    """sha256 of an (H, W, 3) uint8 image's pixels (row-major RGB bytes)."""
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()


def check_rgb8(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name} must be an (H, W, 3) uint8 array, got shape {shape} dtype {dtype}")


def read_exif(path: str | os.PathLike) -> bytes | None:
    """The EXIF block of a photo with its orientation reset (for --keep-metadata), or None."""
    try:
        with Image.open(path) as img:
            exif = img.getexif()
            if not exif:
                return None
            exif[0x0112] = 1  # pixels are stored upright after load_image
            return exif.tobytes()
    except (OSError, UnidentifiedImageError):
        return None
