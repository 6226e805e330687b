import json

from typer.testing import CliRunner

from imnkit.cli import app


def test_identity_distance_same_photo_and_swapped(tmp_path, faces_dir):
    from imnkit.face.detect import detect_faces
    from imnkit.face.report import identity_report
    from imnkit.face.swap import swap_faces
    from imnkit.imageio import load_image, save_png

    photo = faces_dir / "portrait_02.png"
    img = load_image(photo)
    same = CliRunner().invoke(app, ["metrics", str(photo), str(photo), "--identity", "--json"])
    assert same.exit_code == 0, same.stderr
    faces = json.loads(same.stdout)["identity"]
    assert len(faces) == 1 and faces[0]["distance"] == 0.0 and faces[0]["same_person"]

    det = detect_faces(img)
    mask = swap_faces(img, det.faces, seed=0).image
    report = identity_report(img, mask, det.faces)
    assert report[0]["distance"] >= 0.6 and not report[0]["same_person"]
    save_png(tmp_path / "mask.png", mask)
    table = CliRunner().invoke(app, ["metrics", str(photo), str(tmp_path / "mask.png"), "--identity"])
    assert table.exit_code == 0 and "identity face 0" in table.stdout
