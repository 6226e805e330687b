import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_stage_reference_is_generated_from_the_declarations():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "update_reference.py"), "--check"], capture_output=True)
    assert r.returncode == 0, "docs/reference.md is stale: run python scripts/update_reference.py"


def test_every_stage_is_documented_with_every_parameter():
    from imnkit.stage import available_stages

    text = (REPO / "docs" / "reference.md").read_text()
    for name, cls in available_stages().items():
        assert f"### `{name}`" in text
        for p in cls.params:
            assert f"| `{p.name}` |" in text


def test_every_command_has_an_example_in_the_readme():

    text = (REPO / "README.md").read_text()
    for cmd in ("run", "extract", "metrics", "stage", "stages", "inspect", "train", "doctor", "weights list",
                "weights pull", "weights verify", "keygen"):
        assert f"imnkit {cmd}" in text, cmd


def test_readme_is_short_and_links_resolve():
    import re

    text = (REPO / "README.md").read_text()
    assert len(text) <= 15_000, len(text)
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert (REPO / target).is_file(), target
