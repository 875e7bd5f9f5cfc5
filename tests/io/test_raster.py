"""PNG/JPEG/BMP reading: medseg order (x, y[, c]) checked against Pillow's own pixel access and MONAI's
``PILReader``; an identity affine; one-line errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from monai.data import PILReader
from monai.transforms import LoadImage
from PIL import Image

from medseg.errors import InputError
from medseg.io import MedsegReader, read_image
from medseg.io.raster import read_raster

WIDTH, HEIGHT = 7, 5  # not square, so a swapped axis shows


def rgb_rows() -> np.ndarray:
    """Pillow/numpy layout: (rows, cols, 3)."""
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_axes_match_pillow_pixels_and_monai(tmp_path, suffix, mode):
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(rgb_rows()).convert(mode).save(path)
    array, geometry = read_raster(path)
    assert array.shape == (WIDTH, HEIGHT, 3)[: 3 if mode == "RGB" else 2]
    np.testing.assert_array_equal(geometry.affine, np.eye(4))
    with Image.open(path) as image:  # JPEG is lossy: compare with what Pillow decodes, pixel by pixel
        for x, y in [(0, 0), (WIDTH - 1, 0), (0, HEIGHT - 1), (WIDTH - 1, HEIGHT - 1), (3, 2)]:
            np.testing.assert_array_equal(array[x, y], image.getpixel((x, y)))
    load = {"image_only": True, "ensure_channel_first": True}
    ours = LoadImage(reader=MedsegReader(), **load)(path)
    monai = LoadImage(reader=PILReader(reverse_indexing=True), **load)(path)
    assert ours.shape == monai.shape == ((3,) if mode == "RGB" else (1,)) + (WIDTH, HEIGHT)
    np.testing.assert_array_equal(ours.numpy(), monai.numpy())


def test_lossless_png_keeps_exact_values(tmp_path):
    rows = rgb_rows()
    Image.fromarray(rows).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png")[0], rows.transpose(1, 0, 2))
    grey16 = np.random.default_rng(1).integers(0, 65536, (HEIGHT, WIDTH)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    array = read_raster(tmp_path / "grey16.png")[0]
    assert array.dtype == np.uint16
    np.testing.assert_array_equal(array, grey16.T)


def test_alpha_is_dropped(tmp_path):
    rows = rgb_rows()
    rgba = np.concatenate([rows, np.full((HEIGHT, WIDTH, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_raster(tmp_path / "rgba.png")[0], rows.transpose(1, 0, 2))
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_raster(tmp_path / "la.png")[0], rows[..., 0].T)


def test_palette_and_one_bit_label_pngs_give_class_indices(tmp_path):
    labels = np.random.default_rng(2).integers(0, 4, (HEIGHT, WIDTH)).astype(np.uint8)
    palette = Image.fromarray(labels, "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])  # as VOC-style label PNGs
    palette.save(tmp_path / "labels.png")
    np.testing.assert_array_equal(read_raster(tmp_path / "labels.png")[0], labels.T)
    Image.fromarray(labels > 1).save(tmp_path / "mask.png")  # mode "1"
    mask = read_raster(tmp_path / "mask.png")[0]
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (labels > 1).T)


def make_bad(folder, case: str):
    if case == "missing":
        return folder / "bad.png"
    if case.startswith("truncated"):
        path = folder / f"bad.{case.split()[1]}"
        Image.fromarray(rgb_rows().repeat(8, 0).repeat(8, 1)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path
    content = {"empty": b"", "wrong magic": b"GIF89a" + bytes(200), "text": b"hello world\n"}[case]
    (folder / "bad.png").write_bytes(content)
    return folder / "bad.png"


BAD = {
    "truncated png": "truncated",
    "truncated jpg": "truncated",
    "truncated bmp": "truncated",
    "empty": "empty file",
    "wrong magic": "not a readable PNG file (",
    "text": "cannot identify image file",
    "missing": "file not found",
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_naming_the_file(tmp_path, case):
    path = make_bad(tmp_path, case)
    for read in (read_image, read_raster):
        with pytest.raises(InputError) as info:
            read(path)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{path}: "), message
        assert BAD[case].lower() in message.lower(), message  # Pillow spells "truncated" both ways
