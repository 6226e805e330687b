"""`imnkit review` in a real browser: Debian's Chromium, headless, driven by Selenium.

One review of two photos, `imnkit review` started as a user starts it, in its own process:

- ``astronaut.jpg`` (NASA, public domain). Its faces file, written before the review, lists a false
  face on the flag and misses the real one. On the page the false face is dropped, a box is drawn
  around the missed face, the Mask is previewed (nothing may be written), and the photo is approved.
  On disk: the drawn face replaced and recovered by `imnkit extract`, the dropped box's pixels equal
  to the photo's.
- a synthetic photo with no face, approved with "Approve all": passed through unchanged.

Then: what was written is exactly what `imnkit run --faces` plans, and the running server refuses a
request without the token, another Host, and paths outside its inputs. The screenshots for
docs/review.md come from this test (only the public-domain photo is in them).

Needs: chromium and chromium-driver (Debian packages), imnkit[review] and selenium; skips without.
IMNKIT_REVIEW_SCREENSHOTS=docs/img also saves the screenshots there (palette PNGs, small).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason='the review page needs imnkit[review] (pip install -e ".[test,review]")')
pytest.importorskip("uvicorn", reason='the review page needs imnkit[review] (pip install -e ".[test,review]")')
pytest.importorskip("selenium", reason='the browser test needs selenium (pip install -e ".[test,review]")')

from imnkit.imageio import load_image, save_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.jpg"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")

FALSE_FACE = [10, 20, 90, 100]  # x0, y0, x1, y1 (the faces file's order): on the flag, no face there
TIMEOUT = 180  # seconds for a preview or an approval on a busy two-core machine
IMNKIT = [sys.executable, "-c", "from imnkit.cli import main; main()"]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=960,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def review_server(tmp_path):
    """`imnkit review astronaut.jpg plain.png -o OUT --no-browser`, the astronaut's faces file prepared."""
    from imnkit.faces_file import detect_faces, faces_document, write_faces_file

    out = tmp_path / "out"
    out.mkdir()
    image = load_image(ASTRONAUT)
    detected = detect_faces(image)["faces"]
    assert len(detected) == 1
    false_face = {"box": FALSE_FACE, "detector": "centerface", "score": 0.6}  # as a detector's false face
    write_faces_file(out / "astronaut.faces.json", faces_document(ASTRONAUT, image, [false_face]))
    wall = np.full((240, 320, 3), (196, 202, 210), np.uint8)  # a wall with a door: no face
    wall[60:240, 200:280] = (120, 84, 60)
    plain = tmp_path / "plain.png"
    save_png(plain, wall)

    proc = subprocess.Popen([*IMNKIT, "review", str(ASTRONAUT), str(plain), "-o", str(out), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        url = proc.stdout.readline().strip()  # blocks until the faces are listed and the port is bound
        if not url.startswith("http://127.0.0.1:"):
            proc.kill()
            pytest.fail(f"imnkit review printed {url!r}; stderr: {proc.stderr.read()[-2000:]}")
        yield url, out, {"image": image, "face": detected[0], "plain": plain, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow  # ~15-40 s on two busy cores: a server, a browser, a preview and two approvals
def test_review_drop_add_preview_approve(browser, review_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, out, given = review_server
    shots = tmp_path / "shots"
    shots.mkdir()
    start = time.perf_counter()

    # -- the live server refuses what it must (raw paths: nothing normalised on the way) ---------
    port, token = re.match(r"http://127\.0\.0\.1:(\d+)/\?token=(.+)$", url).groups()
    port = int(port)
    assert _get(port, "/api/photos") == 403
    assert _get(port, f"/api/photos?token={token}x") == 403
    assert _get(port, f"/api/photos?token={token}", host="localhost") == 403
    assert _get(port, f"/api/photos?token={token}") == 200
    for path in ("/static/../../pyproject.toml", "/static/..%2F..%2Fpyproject.toml", f"/{ASTRONAUT}",
                 "/api/photos/2/image", "/api/photos/0/../../../../etc/passwd", f"/static/{ASTRONAUT}"):
        assert _get(port, f"{path}?token={token}") == 404, path

    browser.get(url)
    wait = WebDriverWait(browser, TIMEOUT)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    astro, plain = browser.find_element(By.ID, "photo-0"), browser.find_element(By.ID, "photo-1")
    assert len(astro.find_elements(By.CSS_SELECTOR, ".box")) == 1  # the false face; the real one missed
    assert not plain.find_elements(By.CSS_SELECTOR, ".box")

    # -- drop the false face, draw the missed one -------------------------------------------------
    astro.find_element(By.CSS_SELECTOR, '.box[data-face="0"]').click()
    _drag(browser, astro, given["face"]["box"], (512, 512))
    assert "dropped" in astro.find_element(By.CSS_SELECTOR, '.box[data-face="0"]').get_attribute("class")
    assert len(astro.find_elements(By.CSS_SELECTOR, ".box.added")) == 1
    assert astro.find_element(By.CSS_SELECTOR, ".counts").text.startswith("1 to mask · 1 dropped · 1 added")
    browser.save_screenshot(str(shots / "review-page.png"))

    # -- preview: the masked photo in the page, nothing on disk -----------------------------------
    astro.find_element(By.CSS_SELECTOR, ".preview").click()
    wait.until(lambda d: "previewing" in astro.get_attribute("class") or d.find_element(By.ID, "error").is_displayed())
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.execute_script("return arguments[0].querySelector('.photo').naturalWidth", astro) == 512
    astro.screenshot(str(shots / "review-preview.png"))
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.faces.json"]  # as prepared: the preview wrote nothing

    # -- approve this photo, then all (the plain one is left) -------------------------------------
    astro.find_element(By.CSS_SELECTOR, ".approve").click()
    browser.find_element(By.ID, "approve-all").click()
    wait.until(lambda d: all({"done", "failed"} & set(c.get_attribute("class").split()) for c in (astro, plain)))
    for card in (astro, plain):
        assert "done" in card.get_attribute("class").split(), card.find_element(By.CSS_SELECTOR, ".status").text
    assert browser.find_element(By.ID, "progress-text").text.startswith("2 of 2 approved")
    wait.until(lambda d: d.execute_script("return arguments[0].querySelector('.photo').src.startsWith('blob:')", astro))
    astro.screenshot(str(shots / "review-done.png"))
    seconds = time.perf_counter() - start
    assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []  # no script error, no refusal

    # -- on disk: the faces files and what `imnkit run --faces` plans, nothing else ----------------
    from imnkit.recipe import Runner, load_recipe, resolve_recipe_path

    runner = Runner(load_recipe(resolve_recipe_path("mask")))
    planned = {p.name for f in (ASTRONAUT, given["plain"]) for _, p in runner.planned_outputs(f, out)}
    assert sorted(p.name for p in out.iterdir()) == sorted(planned | {"astronaut.faces.json", "plain.faces.json"})
    _check_astronaut(out, given, tmp_path)
    assert np.array_equal(load_image(out / "plain.masked.png"), load_image(given["plain"]))  # no face listed
    _save_screenshots(shots)
    proc = given["proc"]
    proc.terminate()
    rest, log = proc.communicate(timeout=30)
    assert token not in rest + log  # no access log: the URL holds the token
    print(f"browser part: {seconds:.1f} s")


def _check_astronaut(out: Path, given: dict, tmp_path: Path) -> None:
    from imnkit.faces_file import load_faces_file

    image = given["image"]
    faces = load_faces_file(out / "astronaut.faces.json", image)
    assert len(faces) == 1 and faces[0]["detector"] == "user"  # the drawn face; the false one gone
    assert _overlap(faces[0]["box"], given["face"]["box"]) > 0.8
    masked = load_image(out / "astronaut.masked.png")
    x0, y0, x1, y1 = FALSE_FACE
    assert np.array_equal(masked[y0:y1, x0:x1], image[y0:y1, x0:x1])  # the dropped box: untouched
    x0, y0, x1, y1 = given["face"]["box"]
    diff = np.abs(masked[y0:y1, x0:x1].astype(np.int16) - image[y0:y1, x0:x1]).mean()
    assert diff > 8, diff  # the drawn face: replaced by the Mask
    recovered = tmp_path / "astronaut.recovered.png"
    subprocess.run([*IMNKIT, "extract", str(out / "astronaut.masked.png"), "--aux", str(out / "astronaut.aux.safetensors"),
                    "-o", str(recovered)], check=True, capture_output=True, timeout=300)
    back = load_image(recovered)
    assert _psnr(back[y0:y1, x0:x1], image[y0:y1, x0:x1]) > 40  # and it comes back


def _drag(driver, card, box, size) -> None:
    """Drag the mouse over ``card``'s photo from one corner of ``box`` (x0, y0, x1, y1 photo pixels) to the other."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    overlay = card.find_element(By.CSS_SELECTOR, ".overlay")
    rect = overlay.rect
    sx, sy = rect["width"] / size[0], rect["height"] / size[1]
    x0, y0, x1, y1 = box
    # Selenium's offsets are from the element's centre
    ActionChains(driver).move_to_element_with_offset(overlay, round(x0 * sx - rect["width"] / 2),
                                                     round(y0 * sy - rect["height"] / 2)) \
        .click_and_hold().move_by_offset(round((x1 - x0) * sx / 2), round((y1 - y0) * sy / 2)) \
        .move_by_offset(round((x1 - x0) * sx / 2), round((y1 - y0) * sy / 2)).release().perform()


def _get(port: int, path: str, host: str | None = None) -> int:
    """The status of a GET sent exactly as written (http.client leaves dots and escapes alone)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", f"{host or '127.0.0.1'}:{port}")
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _save_screenshots(shots: Path) -> None:
    target = os.environ.get("IMNKIT_REVIEW_SCREENSHOTS")
    if not target:
        return
    from PIL import Image

    Path(target).mkdir(parents=True, exist_ok=True)
    for shot in sorted(shots.glob("review-*.png")):
        with Image.open(shot) as img:  # a palette PNG: a tenth of the size, no visible loss on a page
            img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
                Path(target) / shot.name, optimize=True)


def _overlap(a, b) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
