"""A corpus of malformed inputs, made by script (nothing large is committed): :data:`CASES` is the table,
:func:`make_corpus` writes every case into a folder.

Each row names the case, how it is made (the builder's docstring), what runs it (a reader, a workflow
function or the ``medseg`` command) and the expected outcome: exit code 2 with a message fragment, or
exit code 0 for a documented result ("read", "read, with a warning"). ``tests/corpus/test_corpus.py``
is parametrised over the table; its length is the corpus size the README reports.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
import tifffile
from PIL import Image

from medseg.data.synthetic import write_dicom_series

HUGE = 4000  # 4000^3 voxels: above the voxel budget on any machine with less than 1 TiB of memory
DICOM_MAX = 65535  # the largest Rows / Columns DICOM's US value allows


# Valid small files: what the malformed cases are made from (also the fuzz's seeds).


def volume() -> np.ndarray:
    return (np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) * 7) - 50


def write_nifti(path: Path, array: np.ndarray | None = None, affine: np.ndarray | None = None) -> Path:
    """Both forms set (codes 1), as dcm2niix and medseg write them."""
    image = nib.Nifti1Image(volume() if array is None else array, None)
    affine = np.diag([0.8, 0.8, 2.0, 1.0]) if affine is None else affine
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, path)
    return path


def write_nrrd(path: Path) -> Path:
    """NRRD or MetaImage by suffix, uncompressed (so that byte edits reach the pixels)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume().transpose(2, 1, 0)))
    image.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(image, str(path), useCompression=False)
    return path


def write_tiff(path: Path) -> Path:
    data = np.ascontiguousarray(volume().transpose(2, 1, 0)).astype(np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack")  # a 4-page z-stack, not one RGBA page
    return path


def write_dicom(folder: Path, slices: int = 4) -> list[Path]:
    return write_dicom_series(volume()[:, :, :slices], np.diag([0.8, 0.8, 2.0, 1.0]), folder)


def write_png(path: Path) -> Path:
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(path)
    return path


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _edit_dicom(path: Path, edit: Callable[[pydicom.Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)


# Builders: each writes one case under ``d`` (its own folder) and returns the path a user would give.


def nifti_empty(d: Path) -> Path:
    """A zero-length ``.nii.gz``."""
    (d / "empty.nii.gz").write_bytes(b"")
    return d / "empty.nii.gz"


def nifti_truncated(d: Path) -> Path:
    """A ``.nii.gz`` cut to half its bytes."""
    return _cut(write_nifti(d / "cut.nii.gz"), 0.5)


def nifti_truncated_raw(d: Path) -> Path:
    """An uncompressed ``.nii`` cut inside its voxels (the header is whole)."""
    return _cut(write_nifti(d / "cut.nii"), 0.7)


def png_as_nifti(d: Path) -> Path:
    """A PNG renamed ``.nii.gz`` (wrong magic bytes)."""
    return write_png(d / "photo.png").rename(d / "photo.nii.gz")


def nifti_nan(d: Path) -> Path:
    """float32 NIfTI with NaN voxels (reads; ``medseg segment`` refuses it)."""
    array = volume().astype(np.float32)
    array[1, 2, 3] = np.nan
    return write_nifti(d / "nan.nii.gz", array)


def nifti_inf(d: Path) -> Path:
    """float32 NIfTI with an infinite voxel (reads; a bundle's case check refuses it)."""
    array = volume().astype(np.float32)
    array[0, 0, 0] = np.inf
    return write_nifti(d / "inf.nii.gz", array)


def _nifti_forms(path: Path, sform: np.ndarray, qform: np.ndarray | None) -> Path:
    image = nib.Nifti1Image(volume(), None)
    image.set_sform(sform, code=1)
    if qform is not None:
        image.set_qform(qform, code=1)
    nib.save(image, path)
    return path


def nifti_singular_affine(d: Path) -> Path:
    """sform (the only form) with a zero third column: every slice at one place."""
    return _nifti_forms(d / "singular.nii.gz", np.diag([0.8, 0.8, 0.0, 1.0]), None)


def nifti_nan_affine(d: Path) -> Path:
    """sform (the only form) with NaN in its translation."""
    sform = np.diag([0.8, 0.8, 2.0, 1.0])
    sform[2, 3] = np.nan
    return _nifti_forms(d / "nan_affine.nii.gz", sform, None)


def nifti_forms_disagree(d: Path) -> Path:
    """qform and sform both set (code 1) but 20 mm apart along z."""
    sform = np.diag([0.8, 0.8, 2.0, 1.0])
    qform = sform.copy()
    qform[2, 3] = 20.0
    return _nifti_forms(d / "forms_disagree.nii.gz", sform, qform)


def nifti_forms_rounding(d: Path) -> Path:
    """qform and sform both set, equal up to float32 rounding of the quaternion (a normal file)."""
    angle = np.radians(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    sform = np.eye(4)
    sform[:3, :3] = rotation @ np.diag([0.8, 0.8, 2.0])
    sform[:3, 3] = [-101.3, 87.1, -403.7]
    return _nifti_forms(d / "forms_rounding.nii.gz", sform, sform)


def nifti_4d(d: Path) -> Path:
    """A 4D NIfTI (two time points) given to a one-channel 3D bundle."""
    return write_nifti(d / "two_frames.nii.gz", np.stack([volume(), volume()], axis=-1))


def nifti_huge(d: Path) -> Path:
    """A 65-byte ``.nii.gz`` whose header declares 4000x4000x4000 float64 (477 GiB)."""
    write_nifti(d / "seed.nii", np.zeros((2, 2, 2), np.float64))
    header = bytearray((d / "seed.nii").read_bytes())
    struct.pack_into("<4h", header, 40, 3, HUGE, HUGE, HUGE)  # dim[0..3] of the NIfTI-1 header
    (d / "seed.nii").unlink()
    (d / "huge.nii.gz").write_bytes(gzip.compress(bytes(header)))
    return d / "huge.nii.gz"


def nrrd_empty(d: Path) -> Path:
    """A zero-length ``.nrrd``."""
    (d / "empty.nrrd").write_bytes(b"")
    return d / "empty.nrrd"


def nrrd_truncated(d: Path) -> Path:
    """An uncompressed ``.nrrd`` cut inside its voxels."""
    return _cut(write_nrrd(d / "cut.nrrd"), 0.8)


def text_as_nrrd(d: Path) -> Path:
    """A text file renamed ``.nrrd`` (no NRRD magic)."""
    (d / "notes.nrrd").write_text("not an image\n")
    return d / "notes.nrrd"


def nhdr_missing_data(d: Path) -> Path:
    """A detached ``.nhdr`` header whose data file was not copied with it."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume().transpose(2, 1, 0)))
    sitk.WriteImage(image, str(d / "ct.nhdr"), useCompression=True)
    for data in d.glob("ct.raw*"):
        data.unlink()
    return d / "ct.nhdr"


def nrrd_huge(d: Path) -> Path:
    """An ``.nrrd`` whose header declares 4000x4000x4000 voxels over 240 bytes of data."""
    path = write_nrrd(d / "huge.nrrd")
    text = path.read_bytes().replace(b"sizes: 6 5 4", f"sizes: {HUGE} {HUGE} {HUGE}".encode())
    path.write_bytes(text)
    return path


def mha_huge(d: Path) -> Path:
    """A MetaImage whose header declares 4000x4000x4000 voxels over 240 bytes of data."""
    path = write_nrrd(d / "huge.mha")
    text = path.read_bytes().replace(b"DimSize = 6 5 4", f"DimSize = {HUGE} {HUGE} {HUGE}".encode())
    path.write_bytes(text)
    return path


def tiff_empty(d: Path) -> Path:
    """A zero-length ``.tif``."""
    (d / "empty.tif").write_bytes(b"")
    return d / "empty.tif"


def tiff_truncated(d: Path) -> Path:
    """A 4-page TIFF cut to 60% of its bytes."""
    return _cut(write_tiff(d / "cut.tif"), 0.6)


def text_as_tiff(d: Path) -> Path:
    """A text file renamed ``.tif``."""
    (d / "notes.tif").write_text("not an image\n")
    return d / "notes.tif"


def tiff_huge(d: Path) -> Path:
    """A 140-byte TIFF whose tags declare one 100000x100000 8-bit page (10 GB)."""
    side = 100_000
    entries = [  # (tag, type, count, value): ImageWidth, ImageLength, BitsPerSample, Compression,
        (256, 4, 1, side),  # Photometric, StripOffsets, SamplesPerPixel, RowsPerStrip, StripByteCounts
        (257, 4, 1, side),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (278, 4, 1, side),
        (279, 4, 1, 1),  # the one byte there is
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
    data = b"II*\x00" + struct.pack("<I", 8 + 16) + bytes(16) + ifd + struct.pack("<I", 0)
    (d / "huge.tif").write_bytes(data)
    return d / "huge.tif"


def png_huge(d: Path) -> Path:
    """An 8x6 PNG whose IHDR declares 100000x100000 pixels (CRC fixed)."""
    data = bytearray(write_png(d / "seed.png").read_bytes())
    (d / "seed.png").unlink()
    struct.pack_into(">II", data, 16, 100_000, 100_000)  # IHDR width, height
    struct.pack_into(">I", data, 29, _crc(bytes(data[12:29])))
    (d / "huge.png").write_bytes(data)
    return d / "huge.png"


def _crc(chunk: bytes) -> int:
    import zlib

    return zlib.crc32(chunk) & 0xFFFFFFFF


def dicom_empty_file(d: Path) -> Path:
    """A valid 4-slice series plus a zero-length ``.dcm`` in its folder."""
    write_dicom(d / "series")
    (d / "series" / "zero.dcm").write_bytes(b"")
    return d / "series"


def dicom_truncated(d: Path) -> Path:
    """A series whose second slice is cut inside its pixel data (20 of its 60 bytes missing)."""
    files = write_dicom(d / "series")
    files[1].write_bytes(files[1].read_bytes()[:-20])
    return d / "series"


def text_as_dicom(d: Path) -> Path:
    """A folder whose only file is text renamed ``.dcm``."""
    (d / "series").mkdir()
    (d / "series" / "report.dcm").write_text("not DICOM\n")
    return d / "series"


def dicom_no_pixels(d: Path) -> Path:
    """A series whose third slice has no PixelData element."""
    files = write_dicom(d / "series")
    _edit_dicom(files[2], lambda ds: delattr(ds, "PixelData"))
    return d / "series"


def dicom_no_position(d: Path) -> Path:
    """A series whose second slice has no ImagePositionPatient."""
    files = write_dicom(d / "series")
    _edit_dicom(files[1], lambda ds: delattr(ds, "ImagePositionPatient"))
    return d / "series"


def dicom_mixed_sizes(d: Path) -> Path:
    """A series whose last slice is 6x5 pixels instead of 5x6 (its pixel data matches its size)."""
    files = write_dicom(d / "series")

    def transpose(ds: pydicom.Dataset) -> None:
        ds.Rows, ds.Columns = ds.Columns, ds.Rows

    _edit_dicom(files[-1], transpose)
    return d / "series"


def dicom_unsupported_syntax(d: Path) -> Path:
    """A series in MPEG2 Main Profile transfer syntax (video: no pydicom decoder)."""
    from pydicom.encaps import encapsulate

    def edit(ds: pydicom.Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
        ds.PixelData = encapsulate([ds.PixelData])

    for path in write_dicom(d / "series"):
        _edit_dicom(path, edit)
    return d / "series"


def dicom_huge_series(d: Path) -> Path:
    """Three slices declaring 65535x65535 pixels each (2 bytes of pixel data)."""
    files = write_dicom(d / "series", slices=3)
    for path in files:
        _edit_dicom(path, _huge_rows)
    return d / "series"


def _huge_rows(ds: pydicom.Dataset) -> None:
    ds.Rows = ds.Columns = DICOM_MAX
    ds.PixelData = b"\x00\x00"


def dicom_huge_multiframe(d: Path) -> Path:
    """One multi-frame file declaring 1000 frames of 65535x65535 pixels (2 bytes of pixel data)."""
    (path,) = write_dicom(d / "series", slices=1)

    def edit(ds: pydicom.Dataset) -> None:
        _huge_rows(ds)
        ds.NumberOfFrames = 1000

    _edit_dicom(path, edit)
    return d / "series"


def label_other_grid(d: Path) -> Path:
    """A label map for ``medseg dicom seg`` that lies 1 m away from its DICOM series (another scan)."""
    write_dicom(d / "series")
    label = (volume() > 0).astype(np.uint8)
    return write_nifti(d / "label.nii.gz", label, np.diag([-0.8, -0.8, 2.0, 1.0]) + _shift(1000.0))


def label_shifted_grid(d: Path) -> Path:
    """A label map on a coarser grid over the same place: resampled onto the series, SEG written."""
    write_dicom(d / "series")
    label = np.ones((3, 3, 2), np.uint8)
    return write_nifti(d / "label.nii.gz", label, np.diag([-1.6, -1.6, 4.0, 1.0]))


def _shift(z: float) -> np.ndarray:
    shift = np.zeros((4, 4))
    shift[2, 3] = z
    return shift


def datalist_escaping(d: Path) -> Path:
    """A datalist in ``lists/`` naming ``../../images/ct.nii.gz``: outside its folder, as MONAI allows."""
    (d / "images").mkdir()
    write_nifti(d / "images" / "ct.nii.gz")
    (d / "a" / "lists").mkdir(parents=True)
    path = d / "a" / "lists" / "datalist.json"
    path.write_text(json.dumps({"test": [{"image": "../../images/ct.nii.gz"}]}))
    return path


# Regressions found by the fuzz (tests/fuzz): each crashed a reader before it was fixed.


def nifti_zero_dim(d: Path) -> Path:
    """A NIfTI whose dim[1] is 0 (nibabel read it as an empty array)."""
    path = write_nifti(d / "zero_dim.nii")
    header = bytearray(path.read_bytes())
    struct.pack_into("<h", header, 42, 0)
    path.write_bytes(header)
    return path


def nifti_infinite_offset(d: Path) -> Path:
    """A NIfTI whose vox_offset is infinite (nibabel raised OverflowError)."""
    path = write_nifti(d / "inf_offset.nii")
    header = bytearray(path.read_bytes())
    struct.pack_into("<f", header, 108, np.inf)
    path.write_bytes(header)
    return path


def nifti_bad_quaternion(d: Path) -> Path:
    """A NIfTI (both forms set) whose quatern_b is 2: no rotation (nibabel raised ValueError)."""
    path = write_nifti(d / "quaternion.nii")
    header = bytearray(path.read_bytes())
    struct.pack_into("<f", header, 256, 2.0)
    path.write_bytes(header)
    return path


def mha_ndims_huge(d: Path) -> Path:
    """A MetaImage with ``NDims = 1e30`` (SimpleITK's MetaIO segfaulted on it)."""
    path = write_nrrd(d / "ndims.mha")
    path.write_bytes(path.read_bytes().replace(b"NDims = 3", b"NDims = 1e30"))
    return path


def tiff_zero_width(d: Path) -> Path:
    """A TIFF whose first page has ImageWidth 0 (tifffile raised ZeroDivisionError)."""
    path = write_tiff(d / "zero_width.tif")
    data = bytearray(path.read_bytes())
    offset = 8 + 2  # the first IFD's first entry: ImageWidth (256), type LONG
    assert struct.unpack_from("<HH", data, offset) == (256, 4)
    struct.pack_into("<I", data, offset + 8, 0)
    path.write_bytes(data)
    return path


def _raw_value(keyword: str, text: str) -> Callable[[pydicom.Dataset], None]:
    """Set ``keyword`` to ``text`` as stored bytes (pydicom would refuse to parse it)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement

    def edit(ds: pydicom.Dataset) -> None:
        tag, raw = tag_for_keyword(keyword), text.encode() + b" " * (len(text) % 2)
        ds[tag] = RawDataElement(pydicom.tag.Tag(tag), dictionary_VR(tag), len(raw), raw, 0, False, True)

    return edit


def dicom_text_slope(d: Path) -> Path:
    """A series whose second slice has RescaleSlope "abc" (a bare ValueError in the rescale)."""
    files = write_dicom(d / "series")
    _edit_dicom(files[1], _raw_value("RescaleSlope", "abc"))
    return d / "series"


def dicom_nan_position(d: Path) -> Path:
    """A series whose first slice has ImagePositionPatient NaN\\0\\0 (a NaN affine)."""
    files = write_dicom(d / "series")
    _edit_dicom(files[0], _raw_value("ImagePositionPatient", "nan\\0\\0"))
    return d / "series"


def dicom_no_orientation(d: Path) -> Path:
    """A series whose second slice has no ImageOrientationPatient (an AttributeError in the geometry)."""
    files = write_dicom(d / "series")
    _edit_dicom(files[1], lambda ds: delattr(ds, "ImageOrientationPatient"))
    return d / "series"


@dataclass(frozen=True)
class Case:
    """One row: ``via`` is ``read`` (read_image), ``case`` (read_case + the abdomen bundle's check),
    ``seg`` (label_map_to_seg), ``datalist`` (expand_inputs) or ``cli`` (``medseg segment``);
    ``exit`` 2 means a medseg error whose message holds ``fragment`` (``kind`` its class name);
    ``exit`` 0 a documented result, ``fragment`` then a warning's text or empty."""

    name: str
    make: Callable[[Path], Path]
    via: str
    exit: int
    fragment: str
    kind: str = "InputError"

    @property
    def how(self) -> str:
        return (self.make.__doc__ or "").strip()


BUDGET = "exceeds the voxel budget"
GEO = "GeometryError"
CASES: list[Case] = [
    Case("nifti_empty", nifti_empty, "read", 2, "not a NIfTI image (empty file)"),
    Case("nifti_truncated", nifti_truncated, "read", 2, "damaged or truncated gzip data"),
    Case("nifti_truncated_raw", nifti_truncated_raw, "read", 2, "not a readable NIfTI file (Expected"),
    Case("png_as_nifti", png_as_nifti, "cli", 2, "not a NIfTI image (damaged or truncated gzip"),
    Case("nifti_nan", nifti_nan, "cli", 2, "NaN or infinite"),
    Case("nifti_inf", nifti_inf, "case", 2, "NaN or infinite"),
    Case("nifti_singular_affine", nifti_singular_affine, "read", 2, "the affine is singular", GEO),
    Case("nifti_nan_affine", nifti_nan_affine, "read", 2, "NaN or infinite values", GEO),
    Case("nifti_forms_disagree", nifti_forms_disagree, "read", 2, "qform and sform disagree", GEO),
    Case("nifti_forms_rounding", nifti_forms_rounding, "read", 0, ""),
    Case("nifti_4d_for_3d", nifti_4d, "case", 2, "expects 1 input channel(s)"),
    Case("nifti_huge", nifti_huge, "cli", 2, BUDGET),
    Case("nrrd_empty", nrrd_empty, "read", 2, "not a readable NRRD file (empty file)"),
    Case("nrrd_truncated", nrrd_truncated, "read", 2, "not a readable NRRD file"),
    Case("text_as_nrrd", text_as_nrrd, "read", 2, "not a readable NRRD file"),
    Case("nhdr_missing_data", nhdr_missing_data, "read", 2, "couldn't open"),
    Case("nrrd_huge", nrrd_huge, "read", 2, BUDGET),
    Case("mha_huge", mha_huge, "read", 2, BUDGET),
    Case("tiff_empty", tiff_empty, "read", 2, "not a readable TIFF file"),
    Case("tiff_truncated", tiff_truncated, "read", 2, "damaged or truncated TIFF"),
    Case("text_as_tiff", text_as_tiff, "read", 2, "not a readable TIFF file"),
    Case("tiff_huge", tiff_huge, "read", 2, BUDGET),
    Case("png_huge", png_huge, "read", 2, "decompression bomb"),
    Case("dicom_empty_file", dicom_empty_file, "read", 0, "skipped, not a DICOM file"),
    Case("dicom_truncated", dicom_truncated, "read", 2, "pixel data has 40 bytes, 5x6 pixels need more"),
    Case("text_as_dicom", text_as_dicom, "read", 2, "no DICOM image files found"),
    Case("dicom_no_pixels", dicom_no_pixels, "read", 2, "no PixelData element"),
    Case("dicom_no_position", dicom_no_position, "read", 2, "slice without ImagePositionPatient", GEO),
    Case("dicom_mixed_sizes", dicom_mixed_sizes, "read", 2, "mixed image sizes", GEO),
    Case("dicom_unsupported_syntax", dicom_unsupported_syntax, "cli", 2, "transfer syntax MPEG2"),
    Case("dicom_huge_series", dicom_huge_series, "read", 2, BUDGET),
    Case("dicom_huge_multiframe", dicom_huge_multiframe, "read", 2, BUDGET),
    Case("label_other_grid", label_other_grid, "seg", 2, "does not overlap"),
    Case("label_coarser_grid", label_shifted_grid, "seg", 0, ""),
    Case("datalist_escaping", datalist_escaping, "datalist", 0, ""),
    Case("nifti_zero_dim", nifti_zero_dim, "read", 2, "header declares no image (size 0x5x4)"),
    Case("nifti_infinite_offset", nifti_infinite_offset, "read", 2, "not a readable NIfTI file"),
    Case("nifti_bad_quaternion", nifti_bad_quaternion, "read", 2, "the qform is not a rotation", GEO),
    Case("mha_ndims_huge", mha_ndims_huge, "read", 2, "(NDims = 1e30; medseg reads 2 to 4 dimensions)"),
    Case("tiff_zero_width", tiff_zero_width, "read", 2, "not a readable TIFF file"),
    Case("dicom_text_slope", dicom_text_slope, "read", 2, "damaged DICOM header: RescaleSlope is 'abc'"),
    Case("dicom_nan_position", dicom_nan_position, "read", 2, "ImagePositionPatient is"),
    Case("dicom_no_orientation", dicom_no_orientation, "read", 2, "without ImageOrientationPatient", GEO),
]


def make_corpus(folder: Path) -> dict[str, Path]:
    """Write every case of :data:`CASES` under ``folder`` (one sub-folder each); name -> its input path."""
    paths = {}
    for case in CASES:
        d = Path(folder) / case.name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        paths[case.name] = case.make(d)
    return paths
