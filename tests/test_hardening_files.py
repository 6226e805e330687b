"""How output files are created in a folder other people can write to (issue 26, items 1, 2 and 4).

Before: temporaries were named ``.{name}.{pid}.tmp`` and opened without O_EXCL or O_NOFOLLOW, so a file
made there in advance gave the aux (a bare key inside) its mode 0644, and a link made there had another
file overwritten with the output. The previews (original faces in the clear) were 0644 beside the masked
photo; the Ray engine's ``file://`` auxes were made 0600 only after their data was written.

The runner's write path is called directly (fast); one test runs ``imnkit run --preview --keep-bundles``
end to end.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from imnkit.bundle import Bundle, load_bundle
from imnkit.errors import OutputError
from imnkit.imageio import atomic_output, encode_png, save_png
from imnkit.recipe import OutputSpec, encode_outputs, load_recipe, write_files

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.toml"))
SECRET = b"the aux: a bare key inside" * 8
VICTIM_TEXT = b"somebody else's file\n"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def png_bytes() -> bytes:
    return encode_png(np.full((8, 8, 3), 120, np.uint8))


@pytest.fixture(params=[0o022, 0o077, 0o000], ids=["umask022", "umask077", "umask000"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the output folder that an attacker wants overwritten."""
    path = tmp_path / "victim" / "important.txt"
    path.parent.mkdir()
    path.write_bytes(VICTIM_TEXT)
    path.chmod(0o644)
    return path


def outputs(folder: Path) -> list[tuple[Path, bytes, int]]:
    return [(folder / "p.masked.png", png_bytes(), 0o644),
            (folder / "p.aux.safetensors", SECRET, 0o600)]


def old_temp_name(path: Path) -> Path:
    """The predictable name the old runner used."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- item 1: temporaries --------------------------------------------------------------------------
def test_a_file_prepared_at_the_old_temporary_name_does_not_widen_the_aux(tmp_path):
    out = tmp_path / "shared-out"
    out.mkdir()
    blobs = outputs(out)
    prepared = old_temp_name(blobs[1][0])
    prepared.write_bytes(b"")
    prepared.chmod(0o644)  # readable by everybody: the old runner kept this mode for the aux
    write_files(blobs, overwrite=False)
    aux = out / "p.aux.safetensors"
    assert aux.read_bytes() == SECRET
    assert mode_of(aux) == 0o600
    assert prepared.read_bytes() == b"" and not prepared.samefile(aux)  # their file is left alone, unused


def test_a_link_prepared_at_the_old_temporary_name_does_not_overwrite_its_target(tmp_path, victim):
    out = tmp_path / "shared-out"
    out.mkdir()
    blobs = outputs(out)
    for path, _, _ in blobs:
        old_temp_name(path).symlink_to(victim)
    write_files(blobs, overwrite=False)
    assert victim.read_bytes() == VICTIM_TEXT and mode_of(victim) == 0o644
    for path, data, mode in blobs:
        assert not path.is_symlink() and path.read_bytes() == data and mode_of(path) == mode


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_at_the_output_name_is_refused(tmp_path, victim, overwrite, dangling):
    out = tmp_path / "shared-out"
    out.mkdir()
    blobs = outputs(out)
    target = tmp_path / "victim" / "not-there-yet.txt" if dangling else victim
    blobs[1][0].symlink_to(target)  # the aux's name points elsewhere
    with pytest.raises(OutputError, match="symbolic link"):
        write_files(blobs, overwrite=overwrite)
    assert victim.read_bytes() == VICTIM_TEXT and mode_of(victim) == 0o644
    assert not (tmp_path / "victim" / "not-there-yet.txt").exists()
    assert blobs[1][0].is_symlink()  # left as it was
    assert sorted(p.name for p in out.iterdir()) == ["p.aux.safetensors"]  # nothing written, no temporary


def test_every_writer_refuses_a_link_at_the_output_name(tmp_path, victim):
    link = tmp_path / "out.png"
    link.symlink_to(victim)
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(OutputError, match="symbolic link"):
        save_png(link, image, overwrite=True)
    with pytest.raises(OutputError, match="symbolic link"):
        Bundle(tensors={"x": np.zeros(2, np.float32)}).save(link, overwrite=True)
    with pytest.raises(OutputError, match="symbolic link"):
        with atomic_output(link, overwrite=True) as tmp:
            tmp.write_bytes(b"x")
    from imnkit import safefile  # the helper itself (the writers above use it)

    with pytest.raises(OutputError, match="symbolic link"):
        with safefile.open_output(link) as fh:
            fh.write(b"x")
    assert victim.read_bytes() == VICTIM_TEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "victim"]


def test_temporaries_have_random_names_and_are_created_exclusively(tmp_path, monkeypatch):
    made = []
    real_open = os.open

    def spy(name, flags, *args, **kwargs):
        if str(name).endswith(".tmp"):
            made.append((Path(name).name, flags))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    write_files(outputs(tmp_path), overwrite=False)
    names = [n for n, _ in made]
    assert len(names) == 2 and str(os.getpid()) not in "".join(n.split(".")[-2] for n in names)
    for name, flags in made:
        assert flags & os.O_EXCL and flags & os.O_NOFOLLOW and flags & os.O_CREAT
        assert len(name.split(".")[-2]) == 16  # 64 random bits
    assert leftovers(tmp_path) == []


def test_a_taken_random_name_is_never_written_through(tmp_path, victim, monkeypatch):
    """Even a guessed name (a link made at the very name drawn) gets a fresh try, not a write."""
    from imnkit import safefile

    drawn = iter(["0" * 16, "1" * 16])
    monkeypatch.setattr(safefile.secrets, "token_hex", lambda n: next(drawn))
    aux = tmp_path / "p.aux.safetensors"
    link = tmp_path / f".{aux.name}.{'0' * 16}.tmp"
    link.symlink_to(victim)
    safefile.write_file(aux, SECRET)
    assert victim.read_bytes() == VICTIM_TEXT and link.is_symlink()
    assert aux.read_bytes() == SECRET and mode_of(aux) == 0o600


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OutputError, match="No space left.*nothing was kept"):
        write_files(outputs(tmp_path), overwrite=False)
    assert list(tmp_path.iterdir()) == []  # the first output was removed again, no temporary stays


def test_a_failed_sync_leaves_nothing_behind(tmp_path, monkeypatch):
    def fsync_fails(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(OutputError, match="Input/output error"):
        write_files(outputs(tmp_path), overwrite=False)
    from imnkit import safefile  # the helper itself (the writers above use it)

    with pytest.raises(OSError):
        with safefile.open_output(tmp_path / "streamed.bin") as fh:
            fh.write(b"x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["stream", "path"])
def test_an_interrupted_writer_leaves_nothing_behind(tmp_path, how):
    from imnkit import safefile

    with pytest.raises(KeyboardInterrupt):
        if how == "stream":
            with safefile.open_output(tmp_path / "clip.mp4") as fh:
                fh.write(b"half a clip")
                raise KeyboardInterrupt
        else:
            with safefile.output_path(tmp_path / "clip.mp4") as path:
                path.write_bytes(b"half a clip")
                raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_output_path_is_private_until_renamed(tmp_path, umask):
    """For libraries that write by name (PyAV): the path sits in a folder only its owner can enter."""
    from imnkit import safefile

    with safefile.output_path(tmp_path / "clip.mp4", mode=0o644) as path:
        assert path.name == "clip.mp4" and path.parent.parent == tmp_path  # the suffix PyAV reads
        assert mode_of(path.parent) == 0o700 and mode_of(path) == 0o644
        path.write_bytes(b"a clip")
    assert mode_of(tmp_path / "clip.mp4") == 0o644 and (tmp_path / "clip.mp4").read_bytes() == b"a clip"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


# -- item 1 and 2: modes from creation, whatever the umask ----------------------------------------
def test_modes_do_not_depend_on_the_umask(tmp_path, umask):
    written = write_files(outputs(tmp_path), overwrite=False)
    assert [mode_of(p) for p in written] == [0o644, 0o600]
    assert mode_of(save_png(tmp_path / "r.recovered.png", np.zeros((4, 4, 3), np.uint8))) == 0o600
    shared = save_png(tmp_path / "s.png", np.zeros((4, 4, 3), np.uint8), mode=0o644)
    assert mode_of(shared) == 0o644
    bundle = Bundle(tensors={"image.protected": np.zeros((4, 4, 3), np.uint8)})
    assert mode_of(bundle.save(tmp_path / "p.bundle.safetensors")) == 0o600
    with atomic_output(tmp_path / "k.key") as tmp:
        tmp.write_bytes(b"k" * 32)
    assert mode_of(tmp_path / "k.key") == 0o600
    from imnkit import safefile  # the helper itself (the writers above use it)

    with safefile.open_output(tmp_path / "m.png", mode=0o644) as fh:
        fh.write(b"x")
    assert mode_of(tmp_path / "m.png") == 0o644


def test_encode_outputs_gives_each_output_its_mode(tmp_path):
    image = np.full((8, 8, 3), 7, np.uint8)
    bundle = Bundle(tensors={"image.masked": image, "preview.image": image, "image.protected": image,
                             "aux.key": np.zeros(4, np.uint8)})
    planned = [(OutputSpec(path="m", image="image.masked"), tmp_path / "m.png"),
               (OutputSpec(path="p", image="preview.image", private=True), tmp_path / "p.png"),
               (OutputSpec(path="a", bundle="aux."), tmp_path / "a.safetensors"),
               (OutputSpec(path="b", bundle=""), tmp_path / "b.safetensors")]
    modes = [mode for _, _, mode in encode_outputs(bundle, planned)]
    assert modes == [0o644, 0o600, 0o600, 0o600]


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_writes_its_preview_private_under_a_name_that_says_so(recipe):
    specs = {spec.image: spec for spec in load_recipe(recipe).outputs if spec.image}
    preview = specs["preview.image"]
    assert preview.private and preview.path == "{stem}.PRIVATE-preview.png"
    assert not specs["image.masked"].private  # the one file to share stays 0644


def test_private_must_be_a_boolean_and_a_bundle_stays_private(tmp_path):
    from imnkit.errors import UsageError

    text = (REPO / "recipes" / "mask.toml").read_text()
    for bad in ('private = "yes"', "private = false"):
        target = 'history = false                # the aux holds only what extraction needs'
        assert target in text
        path = tmp_path / "r.toml"
        path.write_text(text.replace(target, f"{target}\n{bad}"))
        with pytest.raises(UsageError, match="private"):
            load_recipe(path)


# -- item 2 end to end: the preview and the full bundle -------------------------------------------
def test_run_writes_the_preview_and_bundles_private(tmp_path, faces_dir):
    from PIL import Image
    from typer.testing import CliRunner

    from imnkit.cli import app

    photo = tmp_path / "face.png"
    Image.open(faces_dir / "portrait_14_aligned224.jpg").convert("RGB").save(photo)
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        r = CliRunner().invoke(app, ["run", str(REPO / "recipes" / "mask.toml"), str(photo), "-o", str(out),
                                     "--preview", "--keep-bundles", "--save-mask", "--device", "cpu"])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.stderr
    modes = {p.name: mode_of(p) for p in out.iterdir()}
    assert modes == {"face.masked.png": 0o644, "face.mask.png": 0o644, "face.aux.safetensors": 0o600,
                     "face.PRIVATE-preview.png": 0o600, "face.bundle.safetensors": 0o600}
    assert "image.protected" in load_bundle(out / "face.bundle.safetensors").tensors  # why it is private


# -- item 4: the Ray engine's file:// outputs ------------------------------------------------------
@pytest.fixture
def file_url(tmp_path):
    pytest.importorskip("pyarrow.fs")
    from imnkit.engines.remote import open_url

    out = tmp_path / "out"
    return lambda name: open_url(f"file://{out / name}")


def test_file_url_outputs_are_created_with_their_mode(tmp_path, file_url, monkeypatch, umask):
    from imnkit.engines.remote import write_blobs

    seen = []  # the mode of every descriptor that output bytes go to, at the moment they are written
    real_write = os.write

    def spy(fd, data):
        seen.append((bytes(data[:8]), stat.S_IMODE(os.fstat(fd).st_mode)))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    aux, masked = file_url("p.aux.safetensors"), file_url("p.masked.png")
    written = write_blobs([(aux, SECRET, 0o600), (masked, png_bytes(), 0o644)])
    monkeypatch.undo()
    assert [str(u) for u in written] == [str(aux), str(masked)]
    assert (SECRET[:8], 0o600) in seen and (png_bytes()[:8], 0o644) in seen
    assert all(m in (0o600, 0o644) for _, m in seen) and not [m for d, m in seen if d == SECRET[:8] and m != 0o600]
    out = tmp_path / "out"
    assert mode_of(out / "p.aux.safetensors") == 0o600 and mode_of(out / "p.masked.png") == 0o644
    assert leftovers(out) == []


def test_file_url_output_that_is_a_link_is_refused(tmp_path, file_url, victim):
    from imnkit.engines.remote import write_blobs

    aux = file_url("p.aux.safetensors")
    (tmp_path / "out").mkdir()
    Path(aux.path).symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        write_blobs([(aux, SECRET, 0o600)])
    assert victim.read_bytes() == VICTIM_TEXT and Path(aux.path).is_symlink()
    assert leftovers(tmp_path / "out") == []


def test_run_refuses_a_link_at_an_output_name_before_any_work(tmp_path, victim):
    """What docs/errors.md promises: exit 1, one line, the link's target untouched, nothing written."""
    from PIL import Image
    from typer.testing import CliRunner

    from imnkit.cli import app

    photo = tmp_path / "face.png"
    Image.new("RGB", (32, 32), (90, 60, 40)).save(photo)
    out = tmp_path / "out"
    out.mkdir()
    (out / "face.aux.safetensors").symlink_to(victim)
    r = CliRunner().invoke(app, ["run", str(REPO / "recipes" / "mask.toml"), str(photo), "-o", str(out),
                                 "--overwrite", "--device", "cpu"])
    assert r.exit_code == 1 and "is a symbolic link" in r.stderr, r.stderr
    assert victim.read_bytes() == VICTIM_TEXT
    assert sorted(p.name for p in out.iterdir()) == ["face.aux.safetensors"]


def test_ray_manifest_is_never_written_through_a_link_at_the_old_temporary_name(tmp_path, victim):
    """The driver's manifest went to ``.imnkit-manifest.jsonl.{pid}.tmp``, opened with open("w")."""
    pytest.importorskip("ray")
    from imnkit.engines.ray_engine import MANIFEST_NAME, run_on_ray

    recipe = load_recipe(REPO / "recipes" / "mask.toml")
    photo = tmp_path / "in" / "face.png"
    photo.parent.mkdir()
    photo.write_bytes(png_bytes())
    out = tmp_path / "out"
    out.mkdir()
    for name in ("face.masked.png", "face.aux.safetensors"):  # done already: skipped, Ray never starts
        (out / name).write_bytes(b"done")
    old_temp_name(out / MANIFEST_NAME).symlink_to(victim)
    options = {"save_mask": False, "preview": False, "keep_bundles": False}
    results = run_on_ray(recipe, options, [photo], [str(photo.parent)], out, progress=False)
    assert [r.status for r in results] == ["skipped"]
    assert victim.read_bytes() == VICTIM_TEXT
    assert (out / MANIFEST_NAME).is_file() and not (out / MANIFEST_NAME).is_symlink()
    assert '"skipped"' in (out / MANIFEST_NAME).read_text()
