"""The review page's security rules, without a browser: token, Host header, methods, paths, loopback.

The app runs in process (Starlette's TestClient); the photo is synthetic, no model is loaded.
"""

from __future__ import annotations

import socket
from importlib import resources

import pytest

pytest.importorskip("starlette", reason='the review page needs imnkit[review] (pip install -e ".[test,review]")')
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (in imnkit[test])")

from starlette.testclient import TestClient  # noqa: E402

from imnkit.imageio import save_png  # noqa: E402
from imnkit.review.app import build_app, new_token  # noqa: E402
from imnkit.review.server import loopback_socket  # noqa: E402
from imnkit.review.session import Photo, ReviewSession, display_jpeg  # noqa: E402

PORT = 48123  # the TestClient does not listen: any port names the app's address


@pytest.fixture
def review(tmp_path, photo):
    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    save_png(path, photo)
    face = {"box": [20, 10, 60, 50], "points": None, "detector": "dlib", "score": 0.9, "treatment": "swap",
            "identity": None, "review": False}
    photos = [Photo(index=0, path=path, out_dir=tmp_path / "out", width=photo.shape[1], height=photo.shape[0],
                    faces=[face])]
    session = ReviewSession(photos, runner=None, recipe="mask")
    token = new_token()
    client = TestClient(build_app(session, token=token, port=PORT), base_url=f"http://127.0.0.1:{PORT}")
    yield client, token, session, photo
    session.close()


def test_the_page_needs_the_token(review):
    client, token, _, _ = review
    for url in ("/", "/api/photos", "/api/photos/0/image", "/static/review.js", "/api/progress"):
        assert client.get(url).status_code == 403, url
        assert client.get(url, params={"token": token[:-1] + ("A" if token[-1] != "A" else "B")}).status_code == 403
        assert client.get(url, headers={"X-Imnkit-Token": ""}).status_code == 403
    page = client.get("/", params={"token": token})
    assert page.status_code == 200
    assert f'content="{token}"' in page.text and "/static/review.js" in page.text
    assert client.get("/api/photos", headers={"X-Imnkit-Token": token}).json()["photos"][0]["faces"][0]["box"] == [20, 10, 60, 50]


def test_every_answer_forbids_caching_and_framing(review):
    client, token, _, _ = review
    for response in (client.get("/api/photos/0/image", params={"token": token}), client.get("/"),
                     client.get("/static/nope.js", params={"token": token})):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_only_the_loopback_host_name_is_answered(review):
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    client, token, _, _ = review
    for host in ("evil.example", f"evil.example:{PORT}", f"localhost:{PORT}", f"127.0.0.1:{PORT + 1}", "127.0.0.1"):
        response = client.get("/api/photos", params={"token": token}, headers={"Host": host})
        assert response.status_code == 403, host
    assert client.get("/api/photos", params={"token": token}).status_code == 200


def test_changes_need_a_post_with_the_token_in_its_header(review):
    client, token, session, _ = review
    body = {"photos": [{"index": 0, "keep": [], "add": []}]}
    assert client.post("/api/approve", params={"token": token}, json=body).status_code == 403  # query: GET only
    assert client.post("/api/approve", json=body).status_code == 403
    header = {"X-Imnkit-Token": token}
    assert client.post("/api/approve", headers=header, content=b"photos=0",
                       ).status_code == 403  # not JSON: a form another site could post
    assert client.post("/api/approve", headers={**header, "Origin": "http://evil.example"}, json=body).status_code == 403
    assert client.put("/api/approve", headers=header, json=body).status_code == 403
    assert client.get("/api/approve", headers=header).status_code == 405
    assert session.photos[0].status == "to review"  # nothing was queued


def test_photos_are_addressed_by_index_and_nothing_else_is_served(review, tmp_path):
    client, token, session, photo = review
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    get = lambda url, **kw: client.get(url, headers={"X-Imnkit-Token": token}, **kw)  # noqa: E731
    assert get("/api/photos/0/image").content == display_jpeg(photo)
    assert get("/api/photos/0/image", params={"path": str(secret)}).content == display_jpeg(photo)  # ignored
    for url in ("/api/photos/1/image", "/api/photos/-1/image", "/api/photos/0/result",
                "/static/../../pyproject.toml", "/static/..%2F..%2Fpyproject.toml", "/static/%2e%2e/app.py",
                "/static/index.html", "/static/app.py", f"/static/{secret}", f"/{secret}", "/api/photos/0/../../../etc/passwd"):
        response = get(url)
        assert response.status_code == 404, url
        assert b"not for the page" not in response.content
    post = lambda url, body: client.post(url, headers={"X-Imnkit-Token": token}, json=body)  # noqa: E731
    for body in ({"photos": [{"index": 0, "path": str(secret)}]}, {"photos": [{"index": 1}]},
                 {"photos": [{"index": 0, "keep": [1]}]}, {"photos": [{"index": 0, "add": [[0, 0, 10_000, 40]]}]},
                 {"photos": [{"index": 0, "add": [[5, 5, 6, 6]]}]}, {"photos": [], "path": str(secret)}):
        assert post("/api/approve", body).status_code == 400, body
    assert post("/api/photos/0/preview", {"keep": [0], "add": [[-1, 0, 20, 20]]}).status_code == 400
    assert session.photos[0].status == "to review"


def test_the_server_listens_on_loopback_only():
    sock = loopback_socket()
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        other = _non_loopback_address()
        if other is None:
            pytest.skip("this machine has no non-loopback IPv4 address to try")
        with pytest.raises(OSError):
            socket.create_connection((other, port), timeout=2).close()
    finally:
        sock.close()


def test_tokens_are_fresh_and_long():
    tokens = {new_token() for _ in range(8)}
    assert len(tokens) == 8 and min(len(t) for t in tokens) >= 43  # 32 random bytes


def test_the_page_loads_nothing_from_elsewhere():
    static = resources.files("imnkit.review").joinpath("static")
    names = sorted(p.name for p in static.iterdir())
    assert names == ["index.html", "review.css", "review.js"]
    for name in names:
        text = static.joinpath(name).read_text("utf-8")
        assert "http:" not in text and "https:" not in text and "//cdn" not in text, name


def _non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by a UDP connect
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


class _RecordingRunner:
    """Stands in for imnkit.recipe.Runner: plans one output per photo, records the faces option."""

    def __init__(self):
        self.options: dict = {}
        self.faces_seen: list[dict] = []

    def planned_outputs(self, inp, out_dir):
        from imnkit.recipe import OutputSpec

        return [(OutputSpec(path="{stem}.masked.png", image="image.masked"), out_dir / f"{inp.stem}.masked.png")]

    def run_one(self, inp, out_dir, *, overwrite=False):
        from imnkit.recipe import RunResult

        self.faces_seen.append(self.options["faces"])
        path = out_dir / f"{inp.stem}.masked.png"
        path.write_bytes(b"masked")
        return RunResult(inp, "ok", outputs=[path])


def _session(tmp_path, photo, faces, runner):
    path = tmp_path / "a.png"
    save_png(path, photo)
    out = tmp_path / "out"
    out.mkdir()
    photos = [Photo(index=0, path=path, out_dir=out, width=photo.shape[1], height=photo.shape[0], faces=faces)]
    return ReviewSession(photos, runner, recipe="mask"), path, out


def test_an_approval_writes_the_faces_file_and_runs_with_exactly_those_faces(tmp_path, photo):
    from imnkit.faces_file import load_faces_file
    from imnkit.review.session import Edit

    found = {"box": [10, 10, 40, 40], "points": None, "detector": "dlib", "score": 1.2, "treatment": None,
             "identity": None, "review": False}
    doubtful = {**found, "box": [60, 20, 90, 50], "detector": "centerface", "score": 0.57, "treatment": "none",
                "review": True}
    runner = _RecordingRunner()
    session, path, out = _session(tmp_path, photo, [found, doubtful], runner)
    assert [f["masked"] for f in session.listing()["photos"][0]["faces"]] == [True, False]
    session.approve({0: Edit(keep=(1,), add=((100, 50, 128, 90),))})  # drop the found one, keep the doubtful
    session.close()  # waits for the worker
    row = session.progress()["photos"][0]
    assert row["status"] == "done", row
    assert row["outputs"] == ["a.faces.json", "a.masked.png"]
    listed = load_faces_file(out / "a.faces.json", photo)
    assert [(f["box"], f["detector"], f["treatment"]) for f in listed] == [
        ([60, 20, 90, 50], "centerface", None),  # kept: masked as the recipe decides, no longer "none"
        ([100, 50, 128, 90], "user", None)]  # drawn by hand
    assert runner.faces_seen == [{str(path): listed}]  # what `imnkit run --faces` passes the align stage
    assert runner.options["faces"] is None  # the runner is left as it was


def test_an_approval_over_existing_outputs_fails_and_writes_nothing(tmp_path, photo):
    from imnkit.review.session import Edit

    runner = _RecordingRunner()
    session, _, out = _session(tmp_path, photo, [], runner)
    (out / "a.masked.png").write_bytes(b"an earlier run")
    session.approve({0: Edit()})
    session.close()
    row = session.progress()["photos"][0]
    assert row["status"] == "failed" and "exist" in row["message"] and "--overwrite" in row["message"]
    assert sorted(p.name for p in out.iterdir()) == ["a.masked.png"] and not runner.faces_seen
    assert (out / "a.masked.png").read_bytes() == b"an earlier run"


def test_without_the_review_extra_the_command_says_what_to_install(monkeypatch):
    import sys

    from imnkit.errors import UsageError
    from imnkit.review.server import require_review_extra

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    with pytest.raises(UsageError) as err:
        require_review_extra()
    assert err.value.hint == 'pip install "imnkit[review]"'
