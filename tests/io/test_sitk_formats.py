"""NRRD and MetaImage I/O: medseg axis order (x, y[, z][, c]) and a RAS affine, checked against
SimpleITK's own index-to-physical mapping, nibabel's reading of the real CT sample, and the NRRD spec."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from monai.transforms import LoadImage
from scipy.spatial.transform import Rotation

from medseg.data import sample_path
from medseg.errors import GeometryError, InputError
from medseg.io import Geometry, MedsegReader, read_image
from medseg.io.sitk_image import read_sitk_image, sitk_spatial_dims, write_sitk_image

SUFFIXES = [".nrrd", ".nhdr", ".mha", ".mhd"]
FLIP = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS


def oblique_image(shape=(7, 6, 5), dtype=np.int16, components=1) -> sitk.Image:
    """A synthetic ITK volume with a rotated, reflected direction, anisotropic spacing and an origin."""
    rng = np.random.default_rng(0)
    zyx = shape[::-1] + ((components,) if components > 1 else ())
    image = sitk.GetImageFromArray(rng.integers(-500, 500, zyx).astype(dtype), isVector=components > 1)
    direction = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix() @ np.diag([1, -1, 1])
    image.SetDirection(direction.ravel().tolist())
    image.SetSpacing([0.7, 1.3, 2.5])
    image.SetOrigin([-12.0, 40.5, 7.25])
    return image


def corners(shape) -> list[tuple[int, ...]]:
    """Every corner of the index grid and its centre."""
    ends = [(0, n - 1) for n in shape]
    return [
        tuple(int(e[b]) for e, b in zip(ends, bits, strict=True)) for bits in np.ndindex(*[2] * len(shape))
    ] + [tuple(n // 2 for n in shape)]


def assert_matches_sitk(array: np.ndarray, geometry: Geometry, image: sitk.Image) -> None:
    """Each checked voxel: the same value as ``GetPixel`` and the same world point (LPS -> RAS)."""
    dims = image.GetDimension()
    for index in corners(image.GetSize()):
        lps = np.zeros(3)
        lps[:dims] = image.TransformIndexToPhysicalPoint(index)
        ijk = np.zeros(4)
        ijk[3] = 1
        ijk[:dims] = index
        np.testing.assert_allclose(geometry.affine @ ijk, [*(lps * FLIP), 1.0], atol=1e-5)
        np.testing.assert_array_equal(array[index], image.GetPixel(*index))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_real_ct_matches_nibabel(tmp_path, suffix):
    nifti = sample_path("example_ct.nii.gz")
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(sitk.ReadImage(nifti), str(path), useCompression=True)
    array, geometry = read_sitk_image(path)
    reference = nib.load(nifti)
    np.testing.assert_array_equal(array, np.asanyarray(reference.dataobj))
    np.testing.assert_allclose(geometry.affine, reference.affine, atol=1e-4)
    assert sitk_spatial_dims(path) == 3


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_oblique_volume_matches_simpleitk(tmp_path, suffix):
    image = oblique_image()
    sitk.WriteImage(image, str(tmp_path / f"v{suffix}"))
    array, geometry = read_image(tmp_path / f"v{suffix}")
    assert array.shape == (7, 6, 5)
    np.testing.assert_allclose(geometry.spacing, [0.7, 1.3, 2.5])
    np.testing.assert_allclose(geometry.origin, np.multiply([-12.0, 40.5, 7.25], FLIP))
    np.testing.assert_allclose(geometry.direction, np.reshape(image.GetDirection(), (3, 3)) * FLIP[:, None])
    assert_matches_sitk(array, geometry, image)


def test_2d_nrrd_gives_2d_array_and_unit_z(tmp_path):
    image = sitk.GetImageFromArray(np.arange(5 * 8, dtype=np.uint16).reshape(5, 8))  # 8 wide, 5 high
    angle = np.deg2rad(30)
    image.SetDirection([np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)])
    image.SetSpacing([0.5, 0.25])
    image.SetOrigin([3.0, -4.0])
    sitk.WriteImage(image, str(tmp_path / "slice.nrrd"))
    array, geometry = read_sitk_image(tmp_path / "slice.nrrd")
    assert array.shape == (8, 5)
    np.testing.assert_array_equal(geometry.affine[:, 2], [0, 0, 1, 0])
    np.testing.assert_array_equal(geometry.affine[2], [0, 0, 1, 0])
    assert_matches_sitk(array, geometry, image)
    assert sitk_spatial_dims(tmp_path / "slice.nrrd") == 2


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_vector_and_4d_images_give_a_trailing_channel_axis(tmp_path, suffix):
    vector = oblique_image(components=3)
    sitk.WriteImage(vector, str(tmp_path / f"vector{suffix}"), useCompression=True)
    array, geometry = read_sitk_image(tmp_path / f"vector{suffix}")
    assert array.shape == (7, 6, 5, 3)
    assert_matches_sitk(array, geometry, vector)
    frames = np.random.default_rng(1).random((5, 2, 3, 4), dtype=np.float32)  # (t, z, y, x)
    four = sitk.JoinSeries([sitk.GetImageFromArray(frame) for frame in frames])  # a 4D scalar image
    four.SetSpacing([0.5, 0.6, 0.7, 10.0])
    sitk.WriteImage(four, str(tmp_path / f"four{suffix}"))
    array, geometry = read_sitk_image(tmp_path / f"four{suffix}")
    assert array.shape == (4, 3, 2, 5)
    np.testing.assert_allclose(geometry.affine, np.diag([-0.5, -0.6, 0.7, 1.0]))
    for index in [(0, 0, 0, 0), (3, 2, 1, 4), (1, 2, 0, 3)]:
        assert array[index] == four.GetPixel(*index)
    assert sitk_spatial_dims(tmp_path / f"four{suffix}") == 3


def test_hand_written_nrrd_follows_the_spec(tmp_path):
    """The NRRD spec, not SimpleITK: the first axis is fastest, a ``list`` axis anywhere is a channel,
    ``space directions`` in a right-anterior-superior space are the RAS affine's columns."""
    header = (
        "NRRD0004\ntype: short\ndimension: 4\nspace: right-anterior-superior\nsizes: 3 2 2 2\n"
        "space directions: (0,1.5,0) (-2,0,0) (0,0,3) none\nkinds: domain domain domain list\n"
        "space origin: (10,20,30)\nencoding: ascii\n\n"
    )
    (tmp_path / "spec.nrrd").write_text(header + " ".join(str(v) for v in range(24)) + "\n")
    array, geometry = read_sitk_image(tmp_path / "spec.nrrd")
    x, y, z, c = np.indices((3, 2, 2, 2))
    np.testing.assert_array_equal(array, x + 3 * y + 6 * z + 12 * c)
    expected = [[0, -2, 0, 10], [1.5, 0, 0, 20], [0, 0, 3, 30], [0, 0, 0, 1]]
    np.testing.assert_allclose(geometry.affine, expected)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
@pytest.mark.parametrize("shape", [(9, 7), (9, 7, 4)])
def test_label_round_trip_keeps_dtype_values_and_geometry(tmp_path, suffix, dtype, shape):
    labels = np.random.default_rng(2).integers(0, 6, shape).astype(dtype)
    affine = np.eye(4)
    if len(shape) == 3:
        affine[:3, :3] = Rotation.from_euler("z", 25, degrees=True).as_matrix() @ np.diag([0.8, 0.9, 3.0])
        affine[:3, 3] = [-100.0, 50.0, 12.5]
    else:
        affine[:2, :2] = [[0.0, -0.4], [0.3, 0.0]]
        affine[:2, 3] = [5.0, 6.0]
    path = write_sitk_image(tmp_path / f"labels{suffix}", labels, Geometry(affine))
    array, geometry = read_sitk_image(path)
    assert array.dtype == dtype
    np.testing.assert_array_equal(array, labels)
    np.testing.assert_allclose(geometry.affine, affine, atol=1e-9)
    assert_matches_sitk(array, geometry, sitk.ReadImage(str(path)))  # others read what we wrote
    written = {p.name for p in tmp_path.iterdir()}
    data_file = {".nhdr": "labels.raw.gz", ".mhd": "labels.zraw"}.get(suffix)
    assert written == {path.name} | ({data_file} if data_file else set())  # nothing temporary left


def test_channel_round_trip_and_bool(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 255, (6, 5, 4, 3)).astype(np.uint8)
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    write_sitk_image(tmp_path / "rgb.nrrd", rgb, Geometry(affine), channel_last=True)
    np.testing.assert_array_equal(read_sitk_image(tmp_path / "rgb.nrrd")[0], rgb)
    mask = rgb[..., 0] > 100
    write_sitk_image(tmp_path / "mask.mha", mask, Geometry(affine))
    back = read_sitk_image(tmp_path / "mask.mha")[0]
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    real = sitk.WriteImage

    def write_then_fail(image, name, *args, **kwargs):
        real(image, name, *args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", write_then_fail)
    for name in ("a.nrrd", "b.mhd"):
        with pytest.raises(RuntimeError, match="disk full"):
            write_sitk_image(tmp_path / name, np.zeros((3, 3, 3), np.uint8), Geometry(np.eye(4)))
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_what_it_cannot_store(tmp_path):
    tilted = np.eye(4)
    tilted[:3, :3] = Rotation.from_euler("x", 30, degrees=True).as_matrix()
    with pytest.raises(GeometryError, match=r"\(x, y, 1\) volume"):
        write_sitk_image(tmp_path / "slice.nrrd", np.zeros((4, 3), np.uint8), Geometry(tilted))
    with pytest.raises(GeometryError, match="singular"):
        write_sitk_image(
            tmp_path / "v.nrrd", np.zeros((4, 3, 2), np.uint8), Geometry(np.diag([1, 1, 0, 1.0]))
        )
    with pytest.raises(ValueError, match="does not end in"):
        write_sitk_image(tmp_path / "v.png", np.zeros((4, 3, 2), np.uint8), Geometry(np.eye(4)))
    assert list(tmp_path.iterdir()) == []


def test_monai_loader_reads_nrrd_2d_and_3d(tmp_path):
    write_sitk_image(tmp_path / "v.nrrd", np.ones((6, 5, 4), np.int16), Geometry(np.diag([2, 2, 3, 1.0])))
    write_sitk_image(tmp_path / "s.mha", np.ones((6, 5), np.uint8), Geometry(np.eye(4)))
    load = LoadImage(reader=MedsegReader(), image_only=True, ensure_channel_first=True)
    assert MedsegReader().verify_suffix([tmp_path / "v.nrrd", tmp_path / "s.mha"])
    volume, plane = load(tmp_path / "v.nrrd"), load(tmp_path / "s.mha")
    assert volume.shape == (1, 6, 5, 4) and plane.shape == (1, 6, 5)
    np.testing.assert_allclose(volume.affine, np.diag([2, 2, 3, 1.0]))


def make_bad(folder, case: str):
    """A damaged file of each kind, from a real SimpleITK-written volume where there is one."""
    if case == "missing file":
        return folder / "bad.nrrd"
    if case.startswith("truncated") or case == "missing data file":
        name = {"truncated MHA": "bad.mha", "missing data file": "bad.mhd"}.get(case, "bad.nrrd")
        path = folder / name
        sitk.WriteImage(oblique_image(shape=(40, 30, 20)), str(path), useCompression="gzip" in case)
        if case == "missing data file":
            path.with_suffix(".raw").unlink()
        else:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # header intact, data cut
        return path
    name, content = {
        "empty NRRD": ("bad.nrrd", b""),
        "empty MHA": ("bad.mha", b""),
        "wrong magic NRRD": ("bad.nrrd", b"\x89PNG\r\n\x1a\n" * 8),
        "text as MHA": ("bad.mha", b"hello\nworld\n"),
        "corrupt header": ("bad.nrrd", b"NRRD0004\ntype: nonsense\ndimension: 3\n\n"),
    }[case]
    (folder / name).write_bytes(content)
    return folder / name


BAD = {
    "truncated raw NRRD": "fread got only",
    "truncated gzip NRRD": "expected",
    "truncated MHA": "data not read completely",
    "empty NRRD": "empty file",
    "empty MHA": "empty file",
    "wrong magic NRRD": "as magic",
    "text as MHA": "(",
    "corrupt header": 'type "nonsense"',
    "missing data file": "data file",
    "missing file": "file not found",
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_naming_the_file(tmp_path, capfd, case):
    path = make_bad(tmp_path, case)
    capfd.readouterr()
    header_intact = case.startswith("truncated") or case == "missing data file"
    for read in (read_image, read_sitk_image, sitk_spatial_dims):
        if read is sitk_spatial_dims and header_intact:
            assert read(path) == 3  # reads the header only
            continue
        with pytest.raises(InputError) as info:
            read(path)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{path}: ") and BAD[case] in message, message
        kind = "MetaImage" if path.suffix in (".mha", ".mhd") else "NRRD"
        assert case == "missing file" or f"{path}: not a readable {kind} file (" in message, message
    assert capfd.readouterr() == ("", "")  # neither ITK nor MetaIO prints around the error
