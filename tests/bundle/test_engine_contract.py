"""What the engine asks of a bundle, on variants of the model zoo's segmentation template: its own
scripts/ import (and never another bundle's of the same name), a reader whose package is missing
does not matter, and bundles medseg cannot drive are refused in one line before anything runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from zoo_refs import ZOO, make_zoo_bundle, template_nifti

from medseg.bundle.engine import BundleEngine
from medseg.errors import BundleError

NET = '''import torch


class Net(torch.nn.Module):
    """Predicts class {label} everywhere."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(4))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 4, *x.shape[2:]) + self.bias.view(1, 4, *[1] * (x.ndim - 2))
        logits[:, {label}] += 1.0
        return logits
'''


def variant(tmp_path: Path, name: str, change) -> Path:
    """The template bundle as ``name``, its config changed by ``change(config)``, written as JSON."""
    folder = tmp_path / name
    shutil.copytree(ZOO / "segmentation_template", folder)
    config = yaml.safe_load((folder / "configs" / "inference.yaml").read_text())
    (folder / "configs" / "inference.yaml").unlink()
    change(config)
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    return folder


def with_script_network(tmp_path: Path, name: str, label: int) -> Path:
    def change(config):
        config["network_def"] = {"_target_": "scripts.net.Net"}

    folder = variant(tmp_path, name, change)
    (folder / "scripts").mkdir()
    (folder / "scripts" / "__init__.py").write_text("")
    (folder / "scripts" / "net.py").write_text(NET.format(label=label))
    import torch

    (folder / "models").mkdir()
    torch.save({"bias": torch.zeros(4)}, folder / "models" / "model.pt")
    return folder


@pytest.mark.slow  # runs a bundle end to end
def test_each_bundle_imports_its_own_scripts(tmp_path):
    image = template_nifti(tmp_path)
    first = BundleEngine(with_script_network(tmp_path, "a", label=1), device="cpu")
    second = BundleEngine(with_script_network(tmp_path, "b", label=2), device="cpu")
    assert np.unique(first(image).labels).tolist() == [1]
    assert np.unique(second(image).labels).tolist() == [2]  # not a's scripts.net of the same name
    assert str(tmp_path / "a") not in __import__("sys").path


@pytest.mark.slow  # runs a bundle end to end
def test_a_reader_whose_package_is_missing_does_not_matter(tmp_path):
    try:
        import itk  # noqa: F401

        pytest.skip("itk is installed here: the case this test is about cannot arise")
    except ImportError:
        pass

    def change(config):
        config["transforms"][0]["reader"] = "ITKReader"

    folder = variant(tmp_path, "itk_reader", change)
    make_zoo_bundle("segmentation_template", tmp_path / "weights")
    (folder / "models").mkdir()
    shutil.copy(tmp_path / "weights" / "segmentation_template" / "models" / "model.pt", folder / "models")
    prediction = BundleEngine(folder, device="cpu")(template_nifti(tmp_path))
    assert prediction.kind == "labels"


def test_a_bundle_with_its_own_evaluator_is_refused(tmp_path):
    def change(config):
        config["evaluator"]["_target_"] = "scripts.evaluator.PromptEvaluator"

    with pytest.raises(BundleError, match="runs its own evaluator \\(scripts.evaluator.PromptEvaluator\\)"):
        BundleEngine(variant(tmp_path, "prompted", change), device="cpu")


def test_a_classifier_is_refused(tmp_path):
    folder = variant(tmp_path, "classifier", lambda config: None)
    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    meta["network_data_format"]["outputs"]["pred"].update(type="probabilities", format="classes")
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a segmentation bundle .*format classes"):
        BundleEngine(folder, device="cpu")
