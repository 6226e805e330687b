"""The promised Python API (imnkit.mask / imnkit.unmask): docs/api.md's examples run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import imnkit
from imnkit.errors import IntegrityError, UsageError

REPO = Path(__file__).resolve().parents[1]


def test_api_doc_examples_run(monkeypatch):
    monkeypatch.chdir(REPO)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, "docs/api.md", "exec"), {})


def test_mask_unmask_in_memory():
    from imnkit.imageio import load_image

    photo = load_image(REPO / "examples" / "astronaut.jpg")
    result = imnkit.mask(photo, embed__method="detached", seed=3)
    assert isinstance(result, imnkit.MaskResult) and result.faces and result.report["embed"]["method"] == "detached"
    assert np.array_equal(imnkit.unmask(result.masked, result.aux), photo)
    with pytest.raises(IntegrityError):
        imnkit.unmask(result.masked, result.aux[:-1] + bytes([result.aux[-1] ^ 1]))
    with pytest.raises(UsageError):
        imnkit.mask(photo, embed__no_such_param=1)
    with pytest.raises(UsageError):
        imnkit.mask(photo, passphrase="x" * 12, key_file=os.urandom(32))


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, imnkit; print(imnkit.__version__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [imnkit.__version__, "False"]


def test_keyed_extract_needs_no_torch(tmp_path):
    """`imnkit extract` of a keyed aux runs without importing torch (what keeps the whole process fast)."""
    import subprocess
    import sys

    from imnkit.imageio import load_image, save_png

    photo = load_image(REPO / "examples" / "astronaut.jpg")
    result = imnkit.mask(photo, seed=3)  # the default recipe: sealed
    save_png(tmp_path / "a.masked.png", result.masked)
    (tmp_path / "a.aux.safetensors").write_bytes(result.aux)
    code = ("import sys; from imnkit.cli import app\n"
            "try:\n    app(['extract', 'a.masked.png', '--aux', 'a.aux.safetensors', '-q'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.split()[-1] == "False"
    assert np.array_equal(load_image(tmp_path / "a.recovered.png"), imnkit.unmask(result.masked, result.aux))
