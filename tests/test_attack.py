"""The network-inverse attack against each method, on the project's own photos.

An attacker with a masked photo and imnkit, but no aux, runs the shipped network backwards (n = 0).
Against ``inn`` that gives the face back (the documented weakness: no key); against ``sealed`` and
``detached`` it must give back nobody: dlib's identity distance to the original stays >= 0.6.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from imnkit.attack import network_inverse
from imnkit.cli import app
from imnkit.face.descriptors import SAME_PERSON_THRESHOLD
from imnkit.face.report import identity_report
from imnkit.imageio import load_image

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("portrait_03.png", "portrait_05.png")


def attacked_distances(tmp_path: Path, photo: Path, method: str, *extra: str) -> list[float]:
    out = tmp_path / method
    r = CliRunner().invoke(app, ["run", str(REPO / "recipes" / "mask.toml"), str(photo), "-o", str(out),
                                 "--device", "cpu", "--set", f"embed.method={method}", *extra])
    assert r.exit_code == 0, r.stderr
    original = load_image(photo)
    attacked = network_inverse(load_image(out / f"{photo.stem}.masked.png"))
    return [face["distance"] for face in identity_report(original, attacked)]


@pytest.mark.slow
@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("method", ["sealed", "detached"])
def test_network_inverse_attack_recovers_nobody_from_keyed_methods(tmp_path, faces_dir, method, name, one_thread):
    distances = attacked_distances(tmp_path, faces_dir / name, method)
    assert distances and min(distances) >= SAME_PERSON_THRESHOLD, distances


@pytest.mark.slow
def test_network_inverse_attack_recovers_the_face_from_inn(tmp_path, faces_dir, one_thread):
    """What the docs say of inn: anyone with imnkit takes this Mask off."""
    distances = attacked_distances(tmp_path, faces_dir / PHOTOS[0], "inn")
    assert distances and max(distances) < SAME_PERSON_THRESHOLD, distances


@pytest.mark.slow
def test_network_inverse_attack_recovers_the_face_from_inn_with_refine(tmp_path, faces_dir, one_thread):
    """mask-inn.toml's refine tunes the pixels for the aux's n; the attack's n = 0 still takes the Mask off."""
    from imnkit.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / "mask-inn.toml")
    steps = next(s.params["refine"] for s in recipe.steps if s.id == "embed")
    assert steps > 0
    distances = attacked_distances(tmp_path, faces_dir / "portrait_11.jpg", "inn", "--set", f"embed.refine={steps}")
    assert distances and max(distances) < SAME_PERSON_THRESHOLD, distances


@pytest.mark.slow
def test_network_inverse_attack_recovers_nobody_from_a_photo_masked_for_a_recipient(tmp_path, faces_dir, one_thread):
    """Recipients: the aux rides inside the PNG, sealed to a public key; the attacker has the whole file."""
    from imnkit.protect.recipients import Identity

    distances = attacked_distances(tmp_path, faces_dir / PHOTOS[0], "sealed", "--recipient",
                                   str(Identity.generate().recipient))
    assert distances and min(distances) >= SAME_PERSON_THRESHOLD, distances
