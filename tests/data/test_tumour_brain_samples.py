"""The lung CT, MNI152 and Colin27 samples are what their manifests say (independent checks)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medseg.data import manifest_path, sample_path


def manifest(name: str) -> dict:
    return json.loads(Path(manifest_path(name)).read_text())


@pytest.mark.parametrize(("case", "spacing", "ml"), [("lung1", 1.140625, 1.44), ("lung2", 1.2539062, 49.47)])
def test_lung_samples_have_the_documented_grid_and_lesion(case, spacing, ml):
    image = sitk.ReadImage(sample_path(f"{case}_image.nrrd", "pyradiomics"))
    label = sitk.ReadImage(sample_path(f"{case}_label.nrrd", "pyradiomics"))
    assert image.GetSize()[:2] == (256, 256) and image.GetSpacing() == pytest.approx((spacing, spacing, 5.0))
    for attr in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(label, attr)() == pytest.approx(getattr(image, attr)())
    values = sitk.GetArrayFromImage(label)
    assert set(np.unique(values)) == {0, 1}
    assert values.sum() * np.prod(label.GetSpacing()) / 1000 == pytest.approx(ml, abs=0.01)
    hu = sitk.GetArrayFromImage(image)[values > 0]
    assert -200 < np.median(hu) < 100  # a soft-tissue lesion, not air or bone
    entries = manifest("pyradiomics_samples")["training"] + manifest("pyradiomics_samples")["test"]
    geometry = {e["case"]: e["geometry"] for e in entries}[case]
    assert f"tumour {values.sum()} voxels" in geometry or f"nodule {values.sum()} voxels" in geometry


def test_mni152_brain_mask_is_grey_plus_white_matter_with_holes_filled():
    gm, wm = (
        np.asarray(
            nib.load(sample_path(f"mni_icbm152_{t}_tal_nlin_sym_09a_converted.nii.gz", "mni152")).dataobj
        )
        for t in ("gm", "wm")
    )
    reference = (gm.astype(float) + wm) / 255 > 0.5  # the manifest's rule, written out here
    labels, _ = ndimage.label(reference)
    reference = ndimage.binary_fill_holes(labels == np.bincount(labels[labels > 0]).argmax())
    shipped = nib.load(sample_path("mni152_brainmask.nii.gz", "mni152"))
    np.testing.assert_array_equal(np.asarray(shipped.dataobj) > 0, reference)
    t1 = nib.load(sample_path("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "mni152"))
    np.testing.assert_allclose(shipped.affine, t1.affine)
    assert (np.asarray(t1.dataobj)[~reference] == 0).mean() > 0.95  # the template is skull-stripped


def test_colin27_is_a_whole_head_with_its_brain_inside():
    t1 = nib.load(sample_path("ch2.nii.gz", "colin27"))
    mask = nib.load(sample_path("ch2_brainmask.nii.gz", "colin27"))
    np.testing.assert_allclose(mask.affine, t1.affine)
    brain = np.asarray(mask.dataobj) > 0
    image = np.asarray(t1.dataobj).astype(float)
    assert brain.sum() == 1736387 and ndimage.label(brain)[1] == 1
    head = image > 0.1 * np.percentile(image, 99)
    assert (
        head & ~brain
    ).sum() > 0.5 * brain.sum()  # scalp, skull and face outside the brain: not skull-stripped
    assert image[brain].mean() > image[head & ~brain].mean()
