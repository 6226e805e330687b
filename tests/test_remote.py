"""URLs for the Ray engine (imnkit.engines.remote): file:// through pyarrow, and a real S3 API (moto)."""

from __future__ import annotations

import stat
from pathlib import Path, PurePosixPath

import pytest
from typer.testing import CliRunner

from imnkit.cli import app
from imnkit.errors import ExitCode, OutputError, UsageError

pytest.importorskip("pyarrow.fs", reason="pyarrow is not installed (it comes with pip install \"imnkit[ray]\")")

from imnkit.engines.remote import (  # noqa: E402
    Existing, Url, exists, expand_urls, glob_regex, is_url, mirror_target, open_url, write_blobs)

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = (".jpg", ".png", ".webp")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def tree(root: Path) -> Path:
    """photos/{a.jpg, notes.txt, sub/b.png, sub/deeper/c.webp, sub/d.safetensors}"""
    for rel in ("a.jpg", "notes.txt", "sub/b.png", "sub/deeper/c.webp", "sub/d.safetensors"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    return root


def test_is_url_and_a_url_names_outputs_like_a_path():
    assert is_url("s3://b/k") and is_url("file:///tmp/x") and is_url("gs://b")
    assert not is_url("photos/a.jpg") and not is_url("/abs/s3:/x") and not is_url(None)
    u = Url("s3", "bucket/in/sub/a.masked.png", None)
    assert str(u) == "s3://bucket/in/sub/a.masked.png"
    assert (u.name, u.stem, u.suffix) == ("a.masked.png", "a.masked", ".png")
    assert str(u.parent) == "s3://bucket/in/sub" and str(u.parent.parent.parent) == "s3://bucket"
    out = Url("s3", "bucket/out", None)
    assert str(out / "x.png") == "s3://bucket/out/x.png"
    assert out / "." == out and str(out / PurePosixPath("a/b")) == "s3://bucket/out/a/b"


def test_glob_stars_stay_in_one_segment_and_double_stars_span_any():
    rx = glob_regex("b/in/*.jpg")
    assert rx.match("b/in/a.jpg") and not rx.match("b/in/sub/a.jpg") and not rx.match("b/in/a.jpgx")
    rx = glob_regex("b/in/**/*.png")
    assert rx.match("b/in/a.png") and rx.match("b/in/x/y/a.png") and not rx.match("b/other/a.png")
    assert glob_regex("b/[ab].jpg").match("b/a.jpg") and not glob_regex("b/[ab].jpg").match("b/c.jpg")


def test_urls_need_the_ray_engine_in_one_line(tmp_path):
    r = invoke("run", "mask", "s3://bucket/photos", "-o", tmp_path)
    assert r.exit_code == ExitCode.USAGE and "need --engine ray" in r.stderr
    r = invoke("run", "mask", REPO / "examples" / "astronaut.jpg", "-o", "s3://bucket/out")
    assert r.exit_code == ExitCode.USAGE and "need --engine ray" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 2  # the message and its hint, no traceback


def test_a_missing_filesystem_package_is_a_usage_error_naming_it():
    try:
        import adlfs  # noqa: F401

        pytest.skip("adlfs is installed here, so az:// cannot show the missing-package error")
    except ImportError:
        pass
    with pytest.raises(UsageError, match=r"pip install adlfs"):
        open_url("az://container/photos")
    with pytest.raises(UsageError, match="not a scheme pyarrow or fsspec knows"):
        open_url("nosuchscheme://x/y")
    with pytest.raises(UsageError, match="cannot be opened") as err:  # pyarrow quotes the URL: not the keys
        open_url("s3://AKIDSECRET:VERYSECRET@bucket/x y")
    assert "SECRET" not in str(err.value)
    pytest.importorskip("ray.data", reason="the command line needs Ray for --engine ray")
    r = invoke("run", "mask", "az://container/photos", "--engine", "ray")
    assert r.exit_code == ExitCode.USAGE and "pip install adlfs" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_file_urls_expand_like_local_folders_and_globs(tmp_path):
    root = tree(tmp_path / "photos")
    base = f"file://{root}"
    files, roots = expand_urls([base], SUFFIXES)
    assert [str(f) for f in files] == [f"{base}/a.jpg", f"{base}/sub/b.png", f"{base}/sub/deeper/c.webp"]
    assert [str(r) for r in roots] == [base] and files[0].fs.type_name == "local"
    files, roots = expand_urls([f"{base}/*.jpg", f"{base}/**/*.png", f"{base}/sub/d.safetensors"], SUFFIXES)
    assert [f.name for f in files] == ["a.jpg", "b.png", "d.safetensors"] and roots == []
    with pytest.raises(UsageError, match="no such file or folder"):
        expand_urls([f"{base}/missing"], SUFFIXES)
    with pytest.raises(UsageError, match="matches no file"):
        expand_urls([f"{base}/*.tiff"], SUFFIXES)


def test_mirror_target_keeps_sub_folders_below_a_url_or_a_local_output(tmp_path):
    root = tree(tmp_path / "photos")
    files, roots = expand_urls([f"file://{root}"], SUFFIXES)
    out = open_url(f"file://{tmp_path}/out")
    assert [str(mirror_target(f, roots, out)) for f in files] == [
        f"file://{tmp_path}/out", f"file://{tmp_path}/out/sub", f"file://{tmp_path}/out/sub/deeper"]
    assert mirror_target(files[2], roots, tmp_path / "local") == tmp_path / "local" / "sub" / "deeper"
    assert mirror_target(files[2], roots, None) is None
    # A local photo in a local folder, written to a URL: the same mirrored tree.
    (tmp_path / "in" / "x").mkdir(parents=True)
    assert str(mirror_target(tmp_path / "in" / "x" / "p.jpg", [(tmp_path / "in").resolve()], out)) == f"{out}/x"


def test_writes_on_a_file_url_are_whole_private_for_bundles_and_all_or_nothing(tmp_path):
    out = open_url(f"file://{tmp_path}/out")
    assert out.renames  # a filesystem with rename: temporary file, then move
    written = write_blobs([(out / "s" / "a.masked.png", b"png", 0o644), (out / "s" / "a.aux.safetensors", b"aux", 0o600)])
    assert [w.name for w in written] == ["a.masked.png", "a.aux.safetensors"]
    assert (tmp_path / "out/s/a.masked.png").read_bytes() == b"png"
    assert stat.S_IMODE((tmp_path / "out/s/a.aux.safetensors").stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "out/s").iterdir()) == ["a.aux.safetensors", "a.masked.png"]
    # The second output cannot be written (its folder is a file): the first is not kept either.
    (tmp_path / "out/blocker").write_bytes(b"x")
    with pytest.raises(OutputError, match="nothing was kept"):
        write_blobs([(out / "t" / "b.masked.png", b"png", 0o644), (out / "blocker" / "b.aux.safetensors", b"a", 0o600)])
    assert not (tmp_path / "out/t/b.masked.png").exists()
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")]
    # An input is never overwritten.
    with pytest.raises(OutputError, match="refusing to overwrite an input"):
        write_blobs([(out / "s" / "a.masked.png", b"x", 0o644)], inputs=(out / "s" / "a.masked.png",))
    assert (tmp_path / "out/s/a.masked.png").read_bytes() == b"png"


def test_s3_lists_prefixes_and_writes_whole_objects(s3_server):
    bucket = s3_server.bucket("remote-unit")
    for key in ("in/a.jpg", "in/sub/b.png", "in/sub/notes.txt", "other/c.jpg"):
        s3_server.put(bucket, key, key.encode())
    files, roots = expand_urls([s3_server.url(bucket, "in")], SUFFIXES)
    assert [str(f) for f in files] == [f"s3://{bucket}/in/a.jpg", f"s3://{bucket}/in/sub/b.png"]
    assert [str(r) for r in roots] == [f"s3://{bucket}/in"]  # no credentials or endpoint in names
    files, _ = expand_urls([s3_server.url(bucket, "in/**/*.png")], SUFFIXES)
    assert [f.name for f in files] == ["b.png"]
    out = open_url(s3_server.url(bucket, "out"))
    assert not out.renames  # an object store: one upload per output, no temporary object
    write_blobs([(out / "sub" / "a.masked.png", b"png", 0o644), (out / "sub" / "a.aux.safetensors", b"aux", 0o600)])
    assert s3_server.keys(bucket, "out/") == ["out/sub/a.aux.safetensors", "out/sub/a.masked.png"]
    assert s3_server.get(bucket, "out/sub/a.aux.safetensors") == b"aux"
    seen = Existing()
    assert seen(out / "sub" / "a.masked.png") and not seen(out / "sub" / "b.masked.png")
    assert not seen(out / "nowhere" / "a.masked.png")
    assert exists(out / "sub" / "a.aux.safetensors") and not exists(out / "sub" / "zz.png")


def test_a_scheme_pyarrow_does_not_know_goes_through_fsspec():
    """memory:// is fsspec's only (in this process): the fsspec wrapping that gcsfs, adlfs ... use."""
    pytest.importorskip("fsspec")
    out = open_url("memory://imnkit-test/out")
    assert out.fs.type_name.startswith("py::fsspec") and not out.renames
    write_blobs([(out / "sub" / "a.masked.png", b"png", 0o644), (out / "b.jpg", b"jpg", 0o644)])
    files, roots = expand_urls(["memory://imnkit-test/out"], SUFFIXES)
    assert [str(f) for f in files] == [f"{out}/b.jpg", f"{out}/sub/a.masked.png"]  # sorted by path
    assert [str(r) for r in roots] == [str(out)]
    assert Existing()(out / "sub" / "a.masked.png") and not exists(out / "sub" / "zz.png")
