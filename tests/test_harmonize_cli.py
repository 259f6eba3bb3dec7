import numpy as np

from harmbench.cli import main
from harmbench.imaging import encode_image, read_rgb
from harmbench.transfer import get_transfer


def _pair(tmp_path, name="a"):
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(120, 30, (40, 50, 3)), 0, 255).astype(np.uint8)
    img[10:30, 15:35] = np.clip(img[10:30, 15:35].astype(int) + [60, -40, 10], 0, 255).astype(np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 15:35] = 255
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "msk").mkdir(exist_ok=True)
    (tmp_path / "img" / f"{name}.png").write_bytes(encode_image(img, "png"))
    (tmp_path / "msk" / f"{name}.png").write_bytes(encode_image(mask, "png"))
    return img, mask > 0


def test_harmonize_file_matches_transfer_op(tmp_path):
    img, m = _pair(tmp_path)
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "harmonize",
                "--method",
                "reinhard",
                "--device",
                "cpu",
                str(tmp_path / "img" / "a.png"),
                str(tmp_path / "msk" / "a.png"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    got = read_rgb(out)
    ref = get_transfer("reinhard")(img.astype(np.float32) / 255, m, None, ~m)
    ref = np.round(np.clip(ref, 0, 1) * 255).astype(np.uint8)
    assert np.abs(got.astype(int) - ref).max() <= 1
    assert np.array_equal(got[~m], img[~m])
    assert np.abs(got[m].astype(int) - img[m]).mean() > 5


def test_harmonize_folders_and_errors(tmp_path, capsys):
    _pair(tmp_path, "a")
    _pair(tmp_path, "b")
    assert (
        main(
            [
                "harmonize",
                "--method",
                "composite",
                "--device",
                "cpu",
                str(tmp_path / "img"),
                str(tmp_path / "msk"),
                "-o",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert np.array_equal(read_rgb(tmp_path / "out" / "a.png"), read_rgb(tmp_path / "img" / "a.png"))
    (tmp_path / "msk" / "b.png").unlink()
    # a folder with one unusable pair: it is skipped with its reason, the others are written, status 1
    assert main(["harmonize", str(tmp_path / "img"), str(tmp_path / "msk"), "-o", str(tmp_path / "o2")]) == 1
    assert "b.png: no mask named b" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["a.png"]
    assert (
        main(
            [
                "harmonize",
                "--method",
                "nope",
                str(tmp_path / "img" / "a.png"),
                str(tmp_path / "msk" / "a.png"),
                "-o",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    assert "unknown model 'nope'" in capsys.readouterr().err
