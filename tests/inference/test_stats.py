from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medseg.inference.stats import label_stats, write_table


def test_volume_from_known_geometry(tmp_path):
    label = np.zeros((20, 20, 20), np.uint8)
    label[:10, :10, :10] = 1  # 1000 voxels of 2 x 2 x 3 mm = 12 mL
    label[15:, 15:, 15:] = 3  # 125 voxels = 1.5 mL
    image = np.where(label == 1, 40.0, -100.0)
    affine = np.diag([-2.0, 2.0, 3.0, 1.0])
    rows = label_stats(label, affine, {0: "bg", 1: "liver", 2: "spleen", 3: "kidney"}, image=image)
    by_name = {r["name"]: r for r in rows}
    assert by_name["liver"]["volume_ml"] == pytest.approx(12.0)
    assert by_name["liver"]["mean_intensity"] == pytest.approx(40.0)
    assert by_name["spleen"]["voxels"] == 0 and by_name["spleen"]["mean_intensity"] is None
    assert by_name["kidney"]["volume_ml"] == pytest.approx(1.5)
    csv_path, json_path = write_table(rows, tmp_path / "v.csv", tmp_path / "v.json")
    assert [r["name"] for r in csv.DictReader(csv_path.open())] == ["liver", "spleen", "kidney"]
    assert json.loads(json_path.read_text()) == rows
