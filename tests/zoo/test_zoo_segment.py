"""Model-zoo bundles as published, through `medseg segment`: exit 0, every output on the input's
grid, label values within the bundle's channel_def, and the same labels as `python -m monai.bundle
run` with the same (random, seeded) weights on the same input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from bundle_refs import medseg_cli
from zoo_refs import (
    ZOO,
    ZOO_RUN_OVERRIDES,
    ZOO_SEEDS,
    brats_4d,
    brats_channels,
    hovernet_png,
    make_zoo_bundle,
    monai_bundle_run,
    spleen_nifti,
    template_nifti,
)

from medseg.data import sample_path
from medseg.data.synthetic import write_dicom_series

pytestmark = pytest.mark.slow


def medseg(*args: str) -> subprocess.CompletedProcess:
    """`medseg ARGS --quiet`, which must succeed."""
    proc = medseg_cli(*args, "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def overrides(name: str) -> list[str]:
    """The same config overrides as the reference run (only BraTS has one that inference sees)."""
    keep = {k: v for k, v in ZOO_RUN_OVERRIDES[name].items() if not k.startswith("postprocessing")}
    return [a for k, v in keep.items() for a in ("--override", f"{k}={json.dumps(v)}")]


def nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(path)
    return np.asarray(image.dataobj), image.affine


def reference(run, suffix: str = ".nii.gz") -> Path:
    (found,) = [f for f in run.files if f.name.endswith(suffix)]
    return found


def assert_same_grid(path: Path, image: Path) -> None:
    """A written label map is on the input's grid, as SimpleITK reads both."""
    a, b = sitk.ReadImage(str(path)), sitk.ReadImage(str(image))
    assert a.GetSize()[:3] == b.GetSize()[:3]
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetSpacing()[:3], b.GetSpacing()[:3], atol=1e-5)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return {name: make_zoo_bundle(name, folder, ZOO_SEEDS[name]) for name in ZOO_RUN_OVERRIDES}


def assert_not_trivial(labels: np.ndarray) -> None:
    """Random weights can predict one class everywhere; the seeds are chosen so that they do not,
    so that equality with MONAI's result means something."""
    assert len(np.unique(labels)) > 1


def test_spleen_nifti(zoo, tmp_path):
    image = spleen_nifti(tmp_path)
    medseg(
        "segment", str(image), "--bundle", str(zoo["spleen_ct_segmentation"]), "--out", str(tmp_path / "out")
    )
    labels, affine = nifti(tmp_path / "out" / "spleen_ct" / "spleen_ct_seg.nii.gz")
    assert_same_grid(tmp_path / "out" / "spleen_ct" / "spleen_ct_seg.nii.gz", image)
    assert set(np.unique(labels)) <= {0, 1}  # channel_def: background, spleen
    assert_not_trivial(labels)
    run = monai_bundle_run(zoo["spleen_ct_segmentation"], [image], tmp_path / "monai")
    expected, expected_affine = nifti(reference(run))
    np.testing.assert_allclose(affine, expected_affine, atol=1e-4)
    np.testing.assert_array_equal(labels, np.rint(expected).astype(labels.dtype))
    rows = json.loads((tmp_path / "out" / "spleen_ct" / "spleen_ct_volumes.json").read_text())
    assert [r["name"] for r in rows] == ["spleen"]


def test_spleen_dicom_folder_with_two_series(zoo, case_b_dicom_with_uids, tmp_path):
    """The CT series chosen by UID from a folder that also holds another series; the reference is
    MONAI's run on the NIfTI that SimpleITK's series reader makes of the same series."""
    folder = tmp_path / "study"
    shutil.copytree(case_b_dicom_with_uids, folder / "ct")
    write_dicom_series(np.zeros((16, 16, 6), np.int16), np.eye(4), folder / "other")
    from medseg.io.dicom import find_series

    ct = next(s for s in find_series(folder) if len(s) == 20)
    out = tmp_path / "out"
    medseg(
        "segment",
        str(folder),
        "--series",
        ct.key,
        "--bundle",
        str(zoo["spleen_ct_segmentation"]),
        "--out",
        str(out),
    )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(case_b_dicom_with_uids)))
    as_nifti = tmp_path / "ct.nii.gz"
    sitk.WriteImage(reader.Execute(), str(as_nifti))
    assert_same_grid(out / "study" / "study_seg.nii.gz", as_nifti)
    run = monai_bundle_run(zoo["spleen_ct_segmentation"], [as_nifti], tmp_path / "monai")
    labels, _ = nifti(out / "study" / "study_seg.nii.gz")
    assert_not_trivial(labels)
    expected, _ = nifti(reference(run))
    np.testing.assert_array_equal(labels, np.rint(expected).astype(labels.dtype))


@pytest.mark.parametrize("form", ["channel files", "4D NIfTI"])
def test_brats_regions(zoo, tmp_path, form):
    """Four channels in, three overlapping sigmoid regions out (tumour core, whole tumour, enhancing),
    and the bundle's own merged BraTS label map (1, 2, 4) equal to MONAI's."""
    bundle, files = zoo["brats_mri_segmentation"], brats_channels(tmp_path)
    inputs = (
        [str(f) for f in files] + ["--channels"] if form == "channel files" else [str(brats_4d(tmp_path))]
    )
    out = tmp_path / "out"
    medseg(
        "segment", *inputs, "--bundle", str(bundle), "--out", str(out), *overrides("brats_mri_segmentation")
    )
    stem = "brats_t1c" if form == "channel files" else "brats_4d"
    regions, affine = nifti(out / stem / f"{stem}_regions.nii.gz")
    merged, _ = nifti(out / stem / f"{stem}_seg.nii.gz")
    assert regions.shape == (*nib.load(files[0]).shape, 3) and set(np.unique(regions)) <= {0, 1}
    assert_not_trivial(merged)
    np.testing.assert_allclose(affine, nib.load(files[0]).affine, atol=1e-4)
    tc, wt, et = (regions[..., i] > 0 for i in range(3))
    np.testing.assert_array_equal(merged, np.where(et, 4, np.where(tc, 1, np.where(wt, 2, 0))))
    run = monai_bundle_run(bundle, [files], tmp_path / "monai", ZOO_RUN_OVERRIDES["brats_mri_segmentation"])
    expected, _ = nifti(reference(run))
    np.testing.assert_array_equal(merged, np.rint(expected).astype(merged.dtype))
    rows = json.loads((out / stem / f"{stem}_volumes.json").read_text())
    assert [r["name"] for r in rows] == ["Tumor core", "Whole tumor", "Enhancing tumor"]
    assert [r["voxels"] for r in rows] == [int(tc.sum()), int(wt.sum()), int(et.sum())]


def test_brats_refuses_one_channel(zoo, tmp_path):
    image = brats_channels(tmp_path)[0]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "segment", str(image), "--bundle",
         str(zoo["brats_mri_segmentation"]), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "expects 4 input channel(s) (T1c, T1, T2, FLAIR); the case has 1" in proc.stderr
    assert not out.exists()


def test_hovernet_png_instances(zoo, tmp_path):
    """HoVerNet on a 2D RGB PNG (wider than high): instance ids in a TIFF in tifffile's (rows,
    columns) order, equal to the instance map MONAI's run saves (PILReader's (x, y) order)."""
    name = "pathology_nuclei_segmentation_classification"
    image = hovernet_png(tmp_path)
    out = tmp_path / "out"
    medseg("segment", str(image), "--bundle", str(zoo[name]), "--out", str(out))
    instances = tifffile.imread(out / "hovernet_he" / "hovernet_he_instances.ome.tif")
    assert instances.shape == (260, 300)
    assert instances.max() > 5
    run = monai_bundle_run(zoo[name], [image], tmp_path / "monai", ZOO_RUN_OVERRIDES[name])
    expected, _ = nifti(reference(run, "_instance_map.nii.gz"))
    np.testing.assert_array_equal(instances, np.rint(expected.squeeze()).T)
    types = tifffile.imread(out / "hovernet_he" / "hovernet_he_classes.ome.tif")
    expected_types, _ = nifti(reference(run, "_type_map.nii.gz"))
    np.testing.assert_array_equal(types, np.rint(expected_types.squeeze()).T)
    rows = json.loads((out / "hovernet_he" / "hovernet_he_instances.json").read_text())
    assert [r["id"] for r in rows] == [int(i) for i in np.unique(instances) if i > 0]


def test_yaml_template_bundle(zoo, tmp_path):
    image = template_nifti(tmp_path)
    out = tmp_path / "out"
    medseg("segment", str(image), "--bundle", str(zoo["segmentation_template"]), "--out", str(out))
    labels, _ = nifti(out / "template_ct" / "template_ct_seg.nii.gz")
    assert_same_grid(out / "template_ct" / "template_ct_seg.nii.gz", image)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    assert_not_trivial(labels)
    run = monai_bundle_run(zoo["segmentation_template"], [image], tmp_path / "monai")
    expected, _ = nifti(reference(run))
    np.testing.assert_array_equal(labels, np.rint(expected).astype(labels.dtype))


def test_a_datalist_that_reads_a_csv_is_never_evaluated(tmp_path):
    """prostate_mri_anatomy's datalist reads /workspace/data/.../test.csv with pandas at parse time;
    medseg parses only what inference needs, so the bundle runs as published."""
    bundle = make_zoo_bundle("prostate_mri_anatomy", tmp_path)
    mr = nib.load(sample_path("example_mr_sm.nii.gz"))
    image = tmp_path / "mr.nii.gz"
    nib.save(mr.slicer[50:66, 40:56, 2:18], image)  # 3 mm voxels: one 96^3 window at 0.5 mm
    medseg("segment", str(image), "--bundle", str(bundle), "--out", str(tmp_path / "out"))
    labels, _ = nifti(tmp_path / "out" / "mr" / "mr_seg.nii.gz")
    assert_same_grid(tmp_path / "out" / "mr" / "mr_seg.nii.gz", image)
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_a_bundle_monai_can_no_longer_build_is_one_line(tmp_path):
    bundle = tmp_path / "swin_unetr_btcv_segmentation"
    shutil.copytree(ZOO / bundle.name, bundle)
    out = tmp_path / "out"
    image = spleen_nifti(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "segment", str(image), "--bundle", str(bundle),
         "--out", str(out)], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(
        "medseg: error: bundle swin_unetr_btcv_segmentation: cannot build 'network': "
    )
    assert (
        "unexpected keyword argument 'img_size'" in proc.stderr and "written for MONAI 1.4.0" in proc.stderr
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "name", ["endoscopic_tool_segmentation", "pathology_nuclei_segmentation_classification"]
)
def test_png_bundles_see_what_their_own_loader_gives(zoo, tmp_path, name):
    """The bundle's preprocessing of the case medseg read equals its preprocessing of the file under
    its own LoadImaged (PILReader): endoscopic_tool_segmentation says its images have their channels
    last (EnsureChannelFirstd(channel_dim=-1)), HoVerNet reads the channel axis from the metadata."""
    from monai.bundle import ConfigParser

    from medseg.bundle.engine import BundleEngine

    image = hovernet_png(tmp_path)
    engine = BundleEngine(zoo[name], device="cpu")
    ours = engine.preprocess(engine.read(image))["image"]
    parser = ConfigParser()
    parser.read_config(str(zoo[name] / "configs" / "inference.json"))
    theirs = parser.get_parsed_content("preprocessing")({"image": str(image)})["image"]
    assert ours.shape == theirs.shape and ours.shape[0] == 3
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-6)


def test_rgb_bundle_with_channels_last(zoo, tmp_path):
    """endoscopic_tool_segmentation end to end: a 2D mask in tifffile's order, equal to the PNG that
    MONAI's run writes (random weights predict one class here: the test above holds the input)."""
    from PIL import Image

    name = "endoscopic_tool_segmentation"
    image = hovernet_png(tmp_path)
    out = tmp_path / "out"
    medseg("segment", str(image), "--bundle", str(zoo[name]), "--out", str(out))
    labels = tifffile.imread(out / "hovernet_he" / "hovernet_he_seg.ome.tif")
    assert labels.shape == (260, 300) and set(np.unique(labels)) <= {0, 1}
    run = monai_bundle_run(zoo[name], [image], tmp_path / "monai", ZOO_RUN_OVERRIDES[name])
    expected = np.asarray(Image.open(reference(run, ".png")))  # scaled by 255, rows and columns
    np.testing.assert_array_equal(labels, expected // 255)


def test_slice_inferer_bundle_with_an_older_run_id(zoo, tmp_path):
    """ventricular_short_axis_3label: a 2D network (so its metadata says 2D) run slice by slice over
    a 3D volume with SliceInferer, and a run id `evaluating`, which medseg never needs."""
    name = "ventricular_short_axis_3label"
    image = tmp_path / "mr.nii.gz"
    nib.save(nib.load(sample_path("example_mr_sm.nii.gz")).slicer[20:84, 10:74, :], image)
    medseg("segment", str(image), "--bundle", str(zoo[name]), "--out", str(tmp_path / "out"))
    labels, _ = nifti(tmp_path / "out" / "mr" / "mr_seg.nii.gz")
    assert_same_grid(tmp_path / "out" / "mr" / "mr_seg.nii.gz", image)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    assert_not_trivial(labels)
    run = monai_bundle_run(zoo[name], [image], tmp_path / "monai")
    expected, _ = nifti(reference(run))
    np.testing.assert_array_equal(labels, np.rint(expected).astype(labels.dtype))


def test_brats_from_dicom_folders_to_an_overlapping_seg(zoo, tmp_path):
    """Four MR series of one study (DICOM folders) as the four channels: the regions come back as a
    DICOM SEG with one, overlapping, segment per region that dciodvfy accepts and that pydicom alone
    places voxel for voxel where the regions file has them."""
    from dicom_refs import dciodvfy_errors, decode_segments
    from pydicom.uid import generate_uid

    from medseg.io.geometry import LPS_TO_RAS

    name = "brats_mri_segmentation"
    files = brats_channels(tmp_path)
    study = {"study": generate_uid(), "frame_of_reference": generate_uid()}
    folders = []
    for path in files:
        image = nib.load(path)
        folders.append(tmp_path / path.name.replace(".nii.gz", ""))
        volume = np.rint(np.asarray(image.dataobj)).astype(np.int16)
        write_dicom_series(volume, LPS_TO_RAS @ image.affine, folders[-1], modality="MR", uids=dict(study))
    out = tmp_path / "out"
    medseg("segment", *map(str, folders), "--channels", "--bundle", str(zoo[name]), "--format", "nifti,seg",
           "--out", str(out), *overrides(name))  # fmt: skip
    regions, affine = nifti(out / "brats_t1c" / "brats_t1c_regions.nii.gz")
    assert_not_trivial(regions)
    seg = out / "brats_t1c" / "brats_t1c_seg.dcm"
    assert dciodvfy_errors(seg) == []
    segments = decode_segments(seg, regions.shape[:3], LPS_TO_RAS @ affine)
    names = ["Tumor core", "Whole tumor", "Enhancing tumor"]
    present = [n for i, n in enumerate(names) if regions[..., i].any()]
    assert list(segments) == present
    for i, label in enumerate(names):
        if label in segments:
            np.testing.assert_array_equal(segments[label], regions[..., i] > 0, err_msg=label)
    overlap = (regions > 0).sum(-1) > 1
    assert overlap.any()  # nested regions: a voxel in several segments
