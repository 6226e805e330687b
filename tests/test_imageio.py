import io
import os

import numpy as np
import pytest
from PIL import Image

from imnkit import imageio
from imnkit.errors import InputError, OutputError
from imnkit.imageio import atomic_output, load_image, save_png


def write(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgb_png_round_trip_is_exact(tmp_path, photo):
    p = save_png(tmp_path / "a.png", photo)
    assert np.array_equal(load_image(p), photo)
    assert [f.name for f in tmp_path.iterdir()] == ["a.png"]  # no temporary file left


def test_exif_orientation_is_applied(tmp_path, photo):
    img = Image.fromarray(photo)  # 128 wide, 96 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    p = write(img, tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(p)
    assert out.shape == (128, 96, 3)
    plain = load_image(write(img, tmp_path / "plain.jpg", quality=95))
    assert np.abs(out.astype(int) - np.rot90(plain, k=-1).astype(int)).mean() < 2


def test_bytes_already_read_decode_like_the_file(tmp_path, photo):
    p = write(Image.fromarray(photo), tmp_path / "a.jpg", quality=95)
    assert np.array_equal(load_image("elsewhere/a.jpg", data=p.read_bytes()), load_image(p))
    with pytest.raises(InputError, match="elsewhere/b.jpg: the file is empty"):
        load_image("elsewhere/b.jpg", data=b"")
    with pytest.raises(InputError, match="elsewhere/c.png: not an image"):
        load_image("elsewhere/c.png", data=b"hello, not a picture")
    with pytest.raises(InputError, match="truncated|corrupt|unreadable"):
        load_image("elsewhere/d.jpg", data=p.read_bytes()[:300])


@pytest.mark.parametrize("mode", ["RGBA", "L", "LA", "P", "CMYK", "I;16"])
def test_modes_become_rgb8(tmp_path, photo, mode):
    src = Image.fromarray(photo)
    if mode == "I;16":
        arr16 = (np.asarray(src.convert("L")).astype(np.uint16) * 257)
        img = Image.fromarray(arr16)
        assert img.mode == "I;16"
        path = write(img, tmp_path / "x16.png")
    elif mode == "CMYK":
        path = write(src.convert("CMYK"), tmp_path / "x.tiff")
    else:
        path = write(src.convert(mode), tmp_path / f"x_{mode}.png")
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (96, 128, 3)
    if mode == "I;16":
        assert np.array_equal(out[..., 0], np.asarray(src.convert("L")))
    if mode == "RGBA":
        assert np.array_equal(out, photo)


def test_webp_is_read(tmp_path, photo):
    out = load_image(write(Image.fromarray(photo), tmp_path / "x.webp", lossless=True))
    assert np.array_equal(out, photo)


def test_missing_empty_and_not_an_image(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "text.png").write_text("hello, not a picture")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "text.png")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(tmp_path, photo, fmt):
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format=fmt)
    data = buf.getvalue()
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|corrupt|unreadable"):
        load_image(p)


def test_decompression_bomb_limit(tmp_path, photo, monkeypatch):
    p = save_png(tmp_path / "a.png", photo)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1000)
    with pytest.raises(InputError, match="above the"):
        load_image(p)


def test_one_pixel_image(tmp_path):
    p = write(Image.new("RGB", (1, 1), (10, 20, 30)), tmp_path / "one.png")
    assert load_image(p).tolist() == [[[10, 20, 30]]]


def test_png_out_has_no_metadata_unless_asked(tmp_path, photo):
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    src = write(Image.fromarray(photo), tmp_path / "in.jpg", exif=exif.tobytes())
    out = save_png(tmp_path / "out.png", load_image(src))
    with Image.open(out) as img:
        assert not img.getexif() and "exif" not in img.info and img.mode == "RGB"
    kept = save_png(tmp_path / "kept.png", load_image(src), exif=imageio.read_exif(src))
    with Image.open(kept) as img:
        assert img.getexif()[0x010F] == "CameraMaker"


def test_existing_output_and_input_are_protected(tmp_path, photo):
    p = save_png(tmp_path / "a.png", photo)
    with pytest.raises(OutputError, match="already exists"):
        save_png(p, photo)
    with pytest.raises(OutputError, match="input"):
        save_png(p, photo, overwrite=True, inputs=(p,))
    save_png(p, photo[::-1].copy(), overwrite=True)
    assert np.array_equal(load_image(p), photo[::-1])


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("simulated failure")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_reported_and_cleaned(tmp_path, photo, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="No space left"):
        save_png(tmp_path / "out.png", photo)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder(tmp_path, photo, monkeypatch):
    # Tests run as root in CI, where chmod cannot make a folder unwritable: simulate the refusal.
    real_open = os.open

    def refuse(name, *a, **k):  # the temporary file's creation is refused; nothing else
        if str(name).endswith(".tmp"):
            raise PermissionError(13, "Permission denied")
        return real_open(name, *a, **k)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(OutputError, match="cannot write here.*Permission denied"):
        save_png(tmp_path / "x.png", photo)
    assert list(tmp_path.iterdir()) == []


def test_background_composites_transparency(tmp_path):
    """By default alpha is dropped (the pixels under it kept); background= shows it as a viewer does."""
    from PIL import Image

    from imnkit.imageio import load_image

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = [[255, 0], [128, 255]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    kept = load_image(tmp_path / "a.png")
    assert (kept == (10, 200, 30)).all()
    flat = load_image(tmp_path / "a.png", background=(255, 255, 255))
    assert tuple(flat[0, 0]) == (10, 200, 30) and tuple(flat[0, 1]) == (255, 255, 255)
    assert tuple(flat[1, 0]) == tuple(np.round((np.array([10, 200, 30]) * 128 + 255 * 127) / 255).astype(int))
