"""``harmbench.transfer.transfer`` and ``harmbench transfer``: whole images, regions, label maps; errors."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.exposure import match_histograms

from harmbench.cli import main
from harmbench.errors import UserError
from harmbench.imaging import encode_image, read_rgb
from harmbench.transfer import transfer


def _photo(seed: int, h: int = 48, w: int = 64, tint=(0, 0, 0)) -> np.ndarray:
    """A smooth photo-like uint8 image: gradients, a disc, noise, a colour tint."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 3.0, yy * 4.0, (xx + yy) * 1.5], -1) + rng.normal(0, 12, (h, w, 3))
    disc = (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 4) ** 2
    base[disc] += (50, -20, 30)
    return np.clip(base + np.asarray(tint), 0, 255).astype(np.uint8)


def _skimage_region(src: np.ndarray, s: np.ndarray, ref: np.ndarray, r: np.ndarray) -> np.ndarray:
    """scikit-image's per-channel histogram matching of the pixels src[s] onto ref[r], 0–255 floats."""
    a = src[s][:, None, :].astype(np.float64) / 255.0
    b = ref[r][:, None, :].astype(np.float64) / 255.0
    return match_histograms(a, b, channel_axis=-1)[:, 0, :] * 255.0


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert np.abs(got.astype(np.float64) - want).max() <= 0.5 + 1e-6  # our uint8 is the rounding of the match


def test_region_within_one_photo_matches_skimage_on_the_masked_pixels():
    img = _photo(0)
    face = np.zeros(img.shape[:2], bool)
    face[10:30, 20:44] = True  # e.g. the inpainted area
    skin = np.zeros_like(face)
    skin[5:40, 5:60] = True
    skin &= ~face  # the skin around it
    img[face] = np.clip(img[face].astype(int) + (40, -30, 20), 0, 255)
    out = transfer(img, method="histmatch", source_mask=face, reference_mask=skin)
    _close(out[face], _skimage_region(img, face, img, skin))
    assert np.array_equal(out[~face], img[~face])
    # no reference mask with one photo: the reference region is the rest of the photo
    rest = transfer(img, method="histmatch", source_mask=face)
    _close(rest[face], _skimage_region(img, face, img, ~face))


def test_region_across_two_photos_and_whole_images_match_skimage():
    src, ref = _photo(1), _photo(2, 40, 56, tint=(-40, 10, 60))
    s = np.zeros(src.shape[:2], bool)
    s[8:40, 10:30] = True
    r = np.zeros(ref.shape[:2], bool)
    r[20:, 30:] = True
    out = transfer(src, ref, method="histmatch", source_mask=s, reference_mask=r)
    _close(out[s], _skimage_region(src, s, ref, r))
    assert np.array_equal(out[~s], src[~s])
    # no reference mask with another photo: the whole reference
    out = transfer(src, ref, method="histmatch", source_mask=s)
    _close(out[s], _skimage_region(src, s, ref, np.ones(ref.shape[:2], bool)))
    whole = transfer(src, ref, method="histmatch")
    want = match_histograms(src / 255.0, ref / 255.0, channel_axis=-1) * 255.0
    _close(whole.reshape(-1, 3), want.reshape(-1, 3))


def test_label_maps_transfer_label_by_label():
    src, ref = _photo(3), _photo(4, tint=(30, -30, 0))
    src_labels = np.zeros(src.shape[:2], np.int64)
    src_labels[:, 32:] = 1
    src_labels[40:, :] = 2  # label 2 is absent from the reference: kept
    ref_labels = np.zeros(ref.shape[:2], np.uint8)
    ref_labels[24:, :] = 1
    out = transfer(src, ref, method="histmatch", source_labels=src_labels, reference_labels=ref_labels)
    for lab in (0, 1):
        s = src_labels == lab
        _close(out[s], _skimage_region(src, s, ref, ref_labels == lab))
    assert np.array_equal(out[src_labels == 2], src[src_labels == 2])
    # RGB colour label maps: labels are matched by exact colour
    palette = np.array([[255, 0, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    rgb = transfer(
        src, ref, method="histmatch", source_labels=palette[src_labels], reference_labels=palette[ref_labels]
    )
    assert np.array_equal(rgb, out)


@pytest.mark.parametrize("method", ["reinhard", "ychist", "xiao", "idt"])
def test_classical_region_transfer_is_the_op_on_the_regions(method):
    from harmbench.transfer import get_transfer

    src, ref = _photo(5), _photo(6, tint=(0, 40, -40))
    s = np.zeros(src.shape[:2], bool)
    s[5:25, 5:40] = True
    r = ~s
    out = transfer(src, ref, method=method, source_mask=s, reference_mask=r, seed=7)
    op = get_transfer(method)(src / np.float32(255), s, ref / np.float32(255), r, rng=np.random.default_rng(7))
    assert np.abs(out.astype(int) - np.rint(np.clip(op, 0, 1) * 255)).max() == 0
    assert np.array_equal(out[~s], src[~s]) and not np.array_equal(out[s], src[s])


def test_hen_ctn_harmbench_protocol_regions_and_labels():
    from harmbench.models.pretrained import load_pretrained

    model = load_pretrained("hen-ctn-cpu")
    src, ref = _photo(7, 64, 96), _photo(8, 64, 80, tint=(40, -20, -30))
    s = np.zeros(src.shape[:2], bool)
    s[10:50, 20:60] = True
    whole = transfer(src, ref, method="hen-ctn", model=model)
    assert whole.shape == src.shape and not np.array_equal(whole, src)
    region = transfer(src, ref, method="hen-ctn", model=model, source_mask=s)
    assert np.array_equal(region[~s], src[~s]) and not np.array_equal(region[s], src[s])
    # within one photo with the rest as reference = what harmonize does with that mask
    import torch

    one = transfer(src, method="hen-ctn", model=model, source_mask=s)
    x = torch.from_numpy(src).permute(2, 0, 1)[None].float() / 255
    h = model.harmonize(x, torch.from_numpy(s)[None, None].float())
    assert np.array_equal(one, (h[0] * 255).round().byte().permute(1, 2, 0).numpy())
    labels = transfer(
        src,
        ref,
        method="hen-ctn",
        model=model,
        source_labels=s.astype(np.uint8),
        reference_labels=np.ones(ref.shape[:2], np.uint8),
    )  # only label 1 exists in the reference
    assert np.array_equal(labels[~s], src[~s]) and not np.array_equal(labels[s], src[s])


def test_errors_name_the_input(tmp_path, capsys):
    img = _photo(9)
    m = np.zeros(img.shape[:2], bool)
    m[:5, :5] = True
    with pytest.raises(UserError, match="face_mask.png: mask is 10x5 but face.png is 64x48"):
        transfer(img, source_mask=np.ones((5, 10), bool), names={"source_mask": "face_mask.png", "source": "face.png"})
    with pytest.raises(UserError, match="source_mask: mask is empty"):
        transfer(img, source_mask=np.zeros(img.shape[:2], bool))
    with pytest.raises(UserError, match="covers the whole photo"):
        transfer(img, source_mask=np.ones(img.shape[:2], bool))
    with pytest.raises(UserError, match="needs both source and reference label maps"):
        transfer(img, source_labels=np.zeros(img.shape[:2], int))
    with pytest.raises(UserError, match="not both"):
        transfer(
            img,
            source_mask=m,
            source_labels=np.zeros(img.shape[:2], int),
            reference_labels=np.zeros(img.shape[:2], int),
        )
    with pytest.raises(UserError, match="share no label"):
        transfer(img, img, source_labels=np.zeros(img.shape[:2], int), reference_labels=np.ones(img.shape[:2], int))
    with pytest.raises(UserError, match="only hen-ctn has"):
        transfer(img, method="reinhard", weights="x.pth")
    with pytest.raises(UserError, match="authors' protocol"):
        transfer(img, method="histmatch", protocol="official")
    with pytest.raises(UserError, match="unknown transfer method"):
        transfer(img, method="hue")
    with pytest.raises(UserError, match="uint8 RGB"):
        transfer(img / 255.0)
    # the command line reports them with the file names, exit status 2
    (tmp_path / "a.png").write_bytes(encode_image(img, "png"))
    (tmp_path / "m.png").write_bytes(encode_image(np.full((10, 10), 255, np.uint8), "png"))
    assert (
        main(
            [
                "transfer",
                str(tmp_path / "a.png"),
                "--source-mask",
                str(tmp_path / "m.png"),
                "-o",
                str(tmp_path / "o.png"),
            ]
        )
        == 2
    )
    assert f"{tmp_path / 'm.png'}: mask is 10x10 but {tmp_path / 'a.png'} is 64x48" in capsys.readouterr().err
    assert main(["transfer", str(tmp_path / "a.png"), str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png")]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_cli_region_transfer_writes_the_function_result(tmp_path):
    src, ref = _photo(10), _photo(11, tint=(20, 20, -50))
    s = np.zeros(src.shape[:2], np.uint8)
    s[10:40, 10:40] = 255
    for name, arr in (("s.png", src), ("r.png", ref), ("sm.png", s)):
        (tmp_path / name).write_bytes(encode_image(arr, "png"))
    out = tmp_path / "o.png"
    assert (
        main(
            [
                "transfer",
                str(tmp_path / "s.png"),
                str(tmp_path / "r.png"),
                "--method",
                "reinhard",
                "--source-mask",
                str(tmp_path / "sm.png"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert np.array_equal(read_rgb(out), transfer(src, ref, method="reinhard", source_mask=s > 127))
