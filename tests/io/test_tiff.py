"""TIFF/OME-TIFF I/O: medseg axis order (x, y[, z][, c]), pixel sizes in micrometres, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from monai.transforms import LoadImage

from medseg.data import sample_path
from medseg.errors import GeometryError, InputError
from medseg.io import Geometry, MedsegReader, read_image
from medseg.io.tiff import read_tiff, write_tiff


def spacing_affine(*spacing: float) -> Geometry:
    return Geometry(np.diag([*spacing, *[1.0] * (3 - len(spacing)), 1.0]))


@pytest.mark.parametrize(
    "shape, channel_last, spacing",
    [
        ((9, 7), False, (0.5, 0.25)),
        ((9, 7, 5), False, (0.3, 0.3, 1.2)),
        ((9, 7, 3), True, (0.65, 0.65)),
        ((9, 7, 5, 2), True, (0.1, 0.2, 0.4)),
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int64])
def test_round_trip_keeps_values_and_spacing(tmp_path, shape, channel_last, spacing, dtype):
    array = np.random.default_rng(0).integers(0, 200, shape).astype(dtype)
    path = write_tiff(tmp_path / "out.ome.tif", array, spacing_affine(*spacing), channel_last=channel_last)
    back, geometry = read_tiff(path)
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(geometry.spacing[: len(spacing)], spacing)
    assert geometry.origin == (0.0, 0.0, 0.0)
    assert [p.name for p in tmp_path.iterdir()] == ["out.ome.tif"]  # atomic: no temporary left
    with tifffile.TiffFile(path) as tif:  # a real OME-TIFF that other tools read
        assert tif.is_ome and tif.series[0].axes.endswith("YX")


def test_ome_physical_sizes_written_by_tifffile(tmp_path):
    zcyx = np.random.default_rng(1).integers(0, 4000, (4, 2, 6, 5)).astype(np.uint16)
    metadata = {
        "axes": "ZCYX",
        "PhysicalSizeX": 650.0,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.7,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 0.002,
        "PhysicalSizeZUnit": "mm",
    }
    tifffile.imwrite(tmp_path / "stack.ome.tif", zcyx, ome=True, photometric="minisblack", metadata=metadata)
    array, geometry = read_tiff(tmp_path / "stack.ome.tif")
    np.testing.assert_array_equal(array, zcyx.transpose(3, 2, 0, 1))  # (x, y, z, c)
    np.testing.assert_allclose(geometry.spacing, (0.65, 0.7, 2.0))
    np.testing.assert_allclose(geometry.affine, np.diag([0.65, 0.7, 2.0, 1.0]))


@pytest.mark.parametrize("unit", ["um", "micron", "\\u00B5m"])
def test_imagej_hyperstack_spacing(tmp_path, unit):
    zyx = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = tmp_path / "ij.tif"
    metadata = {"axes": "ZYX", "spacing": 1.5, "unit": unit}
    tifffile.imwrite(path, zyx, imagej=True, resolution=(1 / 0.2, 1 / 0.4), metadata=metadata)
    array, geometry = read_tiff(path)
    np.testing.assert_array_equal(array, zyx.transpose(2, 1, 0))
    np.testing.assert_allclose(geometry.spacing, (0.2, 0.4, 1.5))


def test_imagej_channels_go_last_and_nm_converts(tmp_path):
    zcyx = np.random.default_rng(2).integers(0, 255, (3, 2, 4, 5)).astype(np.uint8)
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        zcyx,
        imagej=True,
        resolution=(1 / 100, 1 / 100),
        metadata={"axes": "ZCYX", "spacing": 500, "unit": "nm"},
    )
    array, geometry = read_tiff(path)
    np.testing.assert_array_equal(array, zcyx.transpose(3, 2, 0, 1))
    np.testing.assert_allclose(geometry.spacing, (0.1, 0.1, 0.5))


@pytest.mark.parametrize("unit, per_unit", [("CENTIMETER", 1e4), ("INCH", 25400.0)])
def test_plain_tiff_resolution_tags(tmp_path, unit, per_unit):
    yx = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "plain.tif", yx, resolution=(2000.0, 1000.0), resolutionunit=unit)
    array, geometry = read_tiff(tmp_path / "plain.tif")
    np.testing.assert_array_equal(array, yx.T)
    np.testing.assert_allclose(geometry.spacing[:2], (per_unit / 2000, per_unit / 1000))


def test_uncalibrated_tiff_reads_spacing_one(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((3, 4), np.uint8))  # tifffile writes 1/1, unit none
    assert read_tiff(tmp_path / "plain.tif")[1].spacing == (1.0, 1.0, 1.0)


def test_shipped_samples_read_in_medseg_order():
    for name, source, shape in [
        ("img2d.tif", "nuclei_2d", (512, 512)),
        ("mask2d.tif", "nuclei_2d", (512, 512)),
        ("nuclei.tif", "nuclei_3d", (256, 256, 60)),
        ("nuclei_label.tif", "nuclei_3d", (256, 256, 60)),
    ]:
        path = sample_path(name, source)
        array, geometry = read_tiff(path)
        assert array.shape == shape, name
        np.testing.assert_array_equal(array, tifffile.imread(path).T)  # (y, x) / (z, y, x) reversed
        assert geometry.spacing == (1.0, 1.0, 1.0)  # the files carry no pixel size


def test_load_image_with_medseg_reader_2d_sample():
    path = sample_path("img2d.tif", "nuclei_2d")
    image = LoadImage(reader=MedsegReader(), image_only=True)(path)
    expected, geometry = read_image(path)  # the registry dispatches .tif to read_tiff
    np.testing.assert_array_equal(image.numpy(), expected.astype(np.float32))
    assert tuple(image.meta["spatial_shape"]) == (512, 512)
    assert np.isnan(image.meta["original_channel_dim"])
    np.testing.assert_allclose(image.affine.numpy(), geometry.affine)


def test_load_image_3d_and_channels(tmp_path):
    zyx = np.random.default_rng(3).integers(0, 1000, (5, 6, 7)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.ome.tif", zyx, metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0})
    image = LoadImage(reader=MedsegReader(), image_only=True)(str(tmp_path / "stack.ome.tif"))
    np.testing.assert_array_equal(image.numpy(), zyx.T.astype(np.float32))
    np.testing.assert_allclose(image.affine.numpy(), np.diag([1.0, 1.0, 2.0, 1.0]))
    rgb = np.random.default_rng(4).integers(0, 255, (6, 7, 3)).astype(np.uint8)  # (y, x, samples)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    image = LoadImage(reader=MedsegReader(), image_only=True, ensure_channel_first=True)(
        str(tmp_path / "rgb.tif")
    )
    np.testing.assert_array_equal(image.numpy(), rgb.transpose(2, 1, 0).astype(np.float32))  # (c, x, y)


def truncate(src: str, tmp_path, fraction: float):
    data = open(src, "rb").read()
    path = tmp_path / "broken.tif"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: truncate(sample_path("nuclei.tif", "nuclei_3d"), tmp, 0.5),  # fewer pages than written
        lambda tmp: truncate(sample_path("nuclei.tif", "nuclei_3d"), tmp, 0.9999),  # last strip cut
        lambda tmp: truncate(sample_path("img2d.tif", "nuclei_2d"), tmp, 0.6),  # uncompressed data cut
        lambda tmp: truncate(sample_path("img2d.tif", "nuclei_2d"), tmp, 0.0001),  # header only
    ],
)
def test_corrupt_tiff_is_an_input_error_naming_the_file(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(InputError, match="broken.tif"):
        read_image(path)


def test_non_tiff_with_tif_name(tmp_path):
    (tmp_path / "notes.tif").write_text("this is a text file")
    with pytest.raises(InputError, match=r"notes.tif: not a readable TIFF"):
        read_tiff(tmp_path / "notes.tif")
    with pytest.raises(InputError, match="missing.tif: file not found"):
        read_tiff(tmp_path / "missing.tif")


def test_time_and_channel_axes_together_are_refused(tmp_path):
    tifffile.imwrite(
        tmp_path / "tc.tif", np.zeros((2, 3, 4, 5), np.uint8), imagej=True, metadata={"axes": "TCYX"}
    )
    with pytest.raises(InputError, match="tc.tif: TIFF axes TCYX"):
        read_tiff(tmp_path / "tc.tif")


def test_write_refuses_rotated_or_flipped_geometry(tmp_path):
    rotated = Geometry(np.array([[0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    for geometry in (rotated, spacing_affine(-1.0, 1.0, 1.0)):
        with pytest.raises(GeometryError, match="out.ome.tif"):
            write_tiff(tmp_path / "out.ome.tif", np.zeros((3, 4), np.uint8), geometry)
    assert not list(tmp_path.iterdir())
