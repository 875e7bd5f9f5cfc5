"""Which folder a bundle name or path means: shipped, then the user folder, never the cwd."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_refs import copy_bundle

from medseg.bundle.locate import (
    bundle_names,
    find_bundle,
    is_bare_name,
    shipped_bundles_dir,
    user_bundles_dir,
)
from medseg.errors import BundleError

SHIPPED = (
    "abdomen_ct_segmentation",
    "brain_mri_extraction",
    "lung_tumor_ct_segmentation",
    "nuclei3d_fluo_maskrcnn",
    "nuclei_fluo_maskrcnn",
    "nuclei_fluo_unet2d",
    "nuclei_fluo_unet3d",
)
# Shipped on purpose without weights (no data to train them on here; their docs say how to train).
SHIPPED_UNTRAINED = ("brain_tumor_mri_segmentation",)


def user_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user_bundles"
    monkeypatch.setenv("MEDSEG_BUNDLE_DIR", str(folder))
    return folder


def test_shipped_bundles_are_installed_with_their_weights():
    root = shipped_bundles_dir()
    assert set(SHIPPED) | set(SHIPPED_UNTRAINED) <= set(bundle_names(root))
    for name in SHIPPED:
        assert (root / name / "models" / "model.pt").is_file()
    for name in SHIPPED_UNTRAINED:
        assert not (root / name / "models" / "model.pt").exists()


def test_bare_name_never_resolves_to_a_folder_of_the_cwd(tmp_path, monkeypatch, user_dir):
    decoy = copy_bundle(tmp_path / "abdomen_ct_segmentation")
    monkeypatch.chdir(tmp_path)
    found = find_bundle("abdomen_ct_segmentation")
    assert found == (shipped_bundles_dir() / "abdomen_ct_segmentation").resolve()
    assert not found.is_relative_to(tmp_path)
    assert find_bundle("./abdomen_ct_segmentation") == decoy.resolve()
    assert find_bundle(decoy) == decoy.resolve()


def test_a_local_folder_is_not_found_by_bare_name(tmp_path, monkeypatch, user_dir):
    copy_bundle(tmp_path / "my_local")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError) as err:
        find_bundle("my_local")
    message = str(err.value)
    assert "\n" not in message
    assert "unknown bundle 'my_local'" in message and "write ./my_local" in message
    assert all(name in message for name in SHIPPED)
    assert str(user_dir) in message and "medseg bundle install" in message
    assert find_bundle("./my_local") == (tmp_path / "my_local").resolve()


@pytest.mark.parametrize(
    "text, bare",
    [
        ("abdomen_ct_segmentation", True),
        ("spleen_ct_segmentation_v0.5.0", True),
        ("./abdomen_ct_segmentation", False),
        ("sub/bundle", False),
        ("~/bundle", False),
        ("/abs/bundle", False),
        (".hidden", False),
        ("..", False),
        ("", False),
    ],
)
def test_bare_names_and_paths(text, bare):
    assert is_bare_name(text) is bare


def test_user_folder_bundles_are_found_by_name(user_dir):
    installed = copy_bundle(user_dir / "my_nuclei")
    assert find_bundle("my_nuclei") == installed.resolve()
    assert bundle_names(user_dir) == ["my_nuclei"]


def test_shipped_bundle_wins_over_a_user_folder_one_of_the_same_name(user_dir):
    copy_bundle(user_dir / "nuclei_fluo_unet2d", source="nuclei_fluo_unet3d")
    assert find_bundle("nuclei_fluo_unet2d") == (shipped_bundles_dir() / "nuclei_fluo_unet2d").resolve()


def test_home_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    copy_bundle(tmp_path / "mine")
    assert find_bundle("~/mine") == (tmp_path / "mine").resolve()


def test_user_folder_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSEG_BUNDLE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_bundles_dir() == tmp_path / ".medseg" / "bundles"
    monkeypatch.setenv("MEDSEG_BUNDLE_DIR", "~/elsewhere")
    assert user_bundles_dir() == tmp_path / "elsewhere"


def test_folder_without_metadata_is_one_line_naming_it(tmp_path):
    folder = tmp_path / "not_a_bundle"
    (folder / "configs").mkdir(parents=True)
    with pytest.raises(BundleError) as err:
        find_bundle(folder)
    message = str(err.value)
    assert "\n" not in message and str(folder) in message
    assert "configs/metadata.json" in message and "configs/inference.json" in message


def test_bundle_without_inference_config(tmp_path):
    folder = copy_bundle(tmp_path / "b")
    (folder / "configs" / "inference.json").unlink()
    with pytest.raises(BundleError, match="no configs/inference.json"):
        find_bundle(folder)


def test_missing_folder_and_bad_metadata(tmp_path):
    with pytest.raises(BundleError, match="no such bundle folder"):
        find_bundle(tmp_path / "nowhere")
    folder = copy_bundle(tmp_path / "b")
    (folder / "configs" / "metadata.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable bundle metadata"):
        find_bundle(folder)


def test_workflows_find_bundle_delegates(tmp_path, monkeypatch, user_dir):
    from medseg.workflows.bundles import find_bundle as workflows_find_bundle

    copy_bundle(tmp_path / "nuclei_fluo_unet2d")
    monkeypatch.chdir(tmp_path)
    assert workflows_find_bundle("nuclei_fluo_unet2d") == find_bundle("nuclei_fluo_unet2d")
    assert workflows_find_bundle("nuclei_fluo_unet2d").is_relative_to(shipped_bundles_dir().resolve())
