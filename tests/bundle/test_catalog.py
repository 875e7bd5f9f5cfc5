"""Listing, describing, installing (folder, zip) and downloading bundles, and ``medseg bundle``."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import zipfile
from pathlib import Path

import pytest
from bundle_refs import copy_bundle

from medseg.bundle.catalog import bundle_info, download_bundle, install_bundle, list_bundles
from medseg.bundle.locate import find_bundle
from medseg.cli.bundle_cmd import add_bundle_parser
from medseg.errors import BundleError


def user_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user_bundles"
    monkeypatch.setenv("MEDSEG_BUNDLE_DIR", str(folder))
    return folder


def contents(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_list_shipped_bundles(user_dir):
    bundles = {b.name: b for b in list_bundles()}
    ct = bundles["abdomen_ct_segmentation"]
    assert (ct.origin, ct.inputs, ct.licence) == ("shipped", "1 x CT, 3D", "Apache License, Version 2.0")
    assert {"liver", "spleen", "pancreas"} <= set(ct.labels)
    assert ct.version and ct.task and ct.location.is_dir()
    assert bundles["nuclei_fluo_unet2d"].inputs == "1 x light microscopy, 2D"
    assert bundles["nuclei_fluo_unet3d"].labels == ("background", "interior", "border")


def test_user_folder_bundles_are_listed_after_the_shipped_ones(user_dir):
    copy_bundle(user_dir / "my_nuclei")
    bundles = list_bundles()
    assert [b.origin for b in bundles][-1] == "user"
    assert bundles[-1].name == "my_nuclei" and bundles[-1].location == user_dir / "my_nuclei"


def test_a_broken_user_bundle_does_not_hide_the_others(user_dir):
    bundle = copy_bundle(user_dir / "broken")
    (bundle / "configs" / "metadata.json").write_text("{oops")
    bundles = {b.name: b for b in list_bundles()}
    assert bundles["broken"].task == "unreadable configs/metadata.json"
    assert "abdomen_ct_segmentation" in bundles


def test_bundle_info(user_dir):
    info = bundle_info("abdomen_ct_segmentation")
    assert info["origin"] == "shipped" and info["inputs"] == "1 x CT, 3D"
    assert info["labels"][0] == "background" and "liver" in info["labels"].values()
    assert "inference.json" in info["configs"] and Path(info["configs"]["inference.json"]).is_file()
    assert info["weights"] == {"models/model.pt": True}
    assert json.dumps(info)  # plain data, printable as JSON


def test_bundle_info_says_when_weights_are_missing(user_dir):
    bundle = copy_bundle(user_dir / "no_weights")
    (bundle / "models" / "model.pt").unlink()
    info = bundle_info("no_weights")
    assert info["origin"] == "user" and info["weights"] == {"models/model.pt": False}


def test_install_from_a_folder(tmp_path, user_dir):
    source = copy_bundle(tmp_path / "src" / "my_nuclei")
    (source / "eval").mkdir()
    (source / "eval" / "prediction.nii.gz").write_bytes(b"output, not bundle")
    installed = install_bundle(source)
    assert installed == user_dir / "my_nuclei"
    assert contents(user_dir) == ["my_nuclei"]  # no staging folder left
    assert (installed / "models" / "model.pt").is_file() and not (installed / "eval").exists()
    assert find_bundle("my_nuclei") == installed.resolve()
    assert (source / "eval").is_dir()  # the source is left as it was


def test_install_from_a_model_zoo_zip(tmp_path, user_dir):
    copy_bundle(tmp_path / "src" / "zipped_nuclei")
    archive = shutil.make_archive(
        str(tmp_path / "zipped_nuclei_v0.1.0"), "zip", tmp_path / "src", "zipped_nuclei"
    )
    installed = install_bundle(archive)
    assert installed == user_dir / "zipped_nuclei" and contents(user_dir) == ["zipped_nuclei"]
    assert find_bundle("zipped_nuclei") == installed.resolve()
    assert [b.name for b in list_bundles() if b.origin == "user"] == ["zipped_nuclei"]


@pytest.mark.parametrize("evil", ["../evil.txt", "zoo_bundle/../../evil.txt", "/tmp/evil.txt"])
def test_zip_members_escaping_the_folder_are_refused(tmp_path, user_dir, evil):
    source = copy_bundle(tmp_path / "src" / "zoo_bundle")
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, str(path.relative_to(tmp_path / "src")))
        zf.writestr(evil, "escaped")
    with pytest.raises(BundleError, match="refusing member") as err:
        install_bundle(archive)
    assert "\n" not in str(err.value) and str(archive) in str(err.value)
    assert contents(user_dir) == [] and not (tmp_path / "evil.txt").exists()


def test_zip_without_the_zoo_layout_is_refused(tmp_path, user_dir):
    archive = tmp_path / "flat.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("configs/metadata.json", "{}")
        zf.writestr("configs/inference.json", "{}")
    with pytest.raises(BundleError, match="one top folder NAME/"):
        install_bundle(archive)


def test_install_refuses_a_folder_without_metadata(tmp_path, user_dir):
    folder = copy_bundle(tmp_path / "src" / "broken")
    (folder / "configs" / "metadata.json").unlink()
    with pytest.raises(BundleError) as err:
        install_bundle(folder)
    message = str(err.value)
    assert "\n" not in message and str(folder) in message and "configs/metadata.json" in message
    assert contents(user_dir) == []


def test_install_refuses_to_overwrite_without_force(tmp_path, user_dir):
    source = copy_bundle(tmp_path / "src" / "my_nuclei")
    installed = install_bundle(source)
    (source / "docs" / "README.md").write_text("second version")
    with pytest.raises(BundleError, match="already installed; use --force"):
        install_bundle(source)
    assert (installed / "docs" / "README.md").read_text() != "second version"
    assert install_bundle(source, force=True) == installed
    assert (installed / "docs" / "README.md").read_text() == "second version"
    assert contents(user_dir) == ["my_nuclei"]


def test_install_refuses_shipped_names_and_odd_names(tmp_path, user_dir):
    with pytest.raises(BundleError, match="shipped bundle's name"):
        install_bundle(copy_bundle(tmp_path / "a" / "abdomen_ct_segmentation", source="nuclei_fluo_unet3d"))
    with pytest.raises(BundleError, match="not a bundle name"):
        install_bundle(copy_bundle(tmp_path / "b" / "two words"))
    with pytest.raises(BundleError, match="not a bundle folder or .zip"):
        install_bundle(tmp_path / "missing.zip")
    assert contents(user_dir) == []


def _network_reachable() -> bool:
    try:
        socket.getaddrinfo("api.github.com", 443)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("version", [None, "0.5.0"])  # latest: requests asks the zoo; versioned: urllib
def test_download_offline_is_one_line_and_leaves_nothing(user_dir, version):
    if _network_reachable():
        pytest.skip("this machine has network access: the offline message cannot be checked here")
    with pytest.raises(BundleError) as err:
        download_bundle("spleen_ct_segmentation", version=version)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cannot download bundle spleen_ct_segmentation: no network connection (")
    assert "Download the zip on a machine with internet access" in message
    assert message.endswith("then run: medseg bundle install PATH")
    assert contents(user_dir) == []


def test_download_refuses_a_shipped_name_before_any_network(user_dir):
    with pytest.raises(BundleError, match="shipped bundle's name"):
        download_bundle("abdomen_ct_segmentation")


def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="medseg")
    add_bundle_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_ls_info_install(tmp_path, user_dir, capsys):
    install_source = copy_bundle(tmp_path / "src" / "my_nuclei")
    run_cli(["bundle", "install", str(install_source)])
    assert capsys.readouterr().out.strip() == f"installed {user_dir / 'my_nuclei'}"
    run_cli(["bundle", "ls"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "version", "task", "inputs", "labels", "licence", "location"]
    ct = next(line for line in lines if line.startswith("abdomen_ct_segmentation "))
    assert "1 x CT, 3D" in ct and "spleen, " in ct and ct.endswith("shipped")
    assert next(line for line in lines if line.startswith("my_nuclei ")).endswith("user")
    assert lines[-1].startswith(f"user:    {user_dir}")
    run_cli(["bundle", "info", "nuclei_fluo_unet2d"])
    out = capsys.readouterr().out
    assert out.startswith("nuclei_fluo_unet2d 0.2.0 (shipped)")
    assert "models/model.pt (present)" in out and "1 interior, 2 border" in out
