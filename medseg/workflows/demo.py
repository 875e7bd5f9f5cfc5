"""The demo: segment the embedded real DICOM series (case B) and score it against its reference."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from medseg.data.samples import sample_path
from medseg.inference.stats import write_table
from medseg.io import label_to_grid, read_image
from medseg.io.atomic import atomic_path
from medseg.metrics import dice_per_label
from medseg.typing import PathLike
from medseg.workflows.bundles import bundle_labels, find_bundle
from medseg.workflows.segment import segment

DEMO_IMAGE = "example_ct_dicom"
DEMO_REFERENCE = "example_seg_dicom.nii.gz"


def dice_table(result_label, affine, reference_path: PathLike, names: dict[int, str]) -> list[dict]:
    """Dice of each organ against a reference label map, compared in world coordinates."""
    reference, ref_geometry = read_image(reference_path)
    reference = label_to_grid(reference, ref_geometry.affine, result_label.shape, affine)
    labels = [v for v in names if v > 0]
    scores = dice_per_label(result_label, reference, labels)
    return [
        {
            "label": v,
            "name": names[v],
            "dice": None if math.isnan(scores[v]) else round(scores[v], 4),
            "reference_voxels": int((reference == v).sum()),
            "predicted_voxels": int((result_label == v).sum()),
        }
        for v in labels
    ]


def format_dice(rows: list[dict]) -> str:
    lines = [f"{'organ':<14}{'Dice':>8}{'ref voxels':>13}{'pred voxels':>13}"]
    for row in rows:
        dice = "n/a" if row["dice"] is None else f"{row['dice']:.3f}"
        lines.append(f"{row['name']:<14}{dice:>8}{row['reference_voxels']:>13}{row['predicted_voxels']:>13}")
    return "\n".join(lines)


def demo(
    out_dir: PathLike = "outputs/demo",
    bundle: str = "abdomen_ct_segmentation",
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Segment case B from its DICOM folder; write outputs and ``dice.json``; return a summary."""
    start = time.perf_counter()
    result = segment(
        sample_path(DEMO_IMAGE), bundle=bundle, out_dir=out_dir, device=device, progress=progress
    )
    seconds = time.perf_counter() - start
    names = bundle_labels(find_bundle(bundle))
    rows = dice_table(result.label, result.affine, sample_path(DEMO_REFERENCE), names)
    out_dir = Path(out_dir)
    write_table(rows, out_dir / "dice.csv", out_dir / "dice.json")
    summary = {
        "seconds": round(seconds, 1),
        "outputs": sorted(
            p.relative_to(out_dir).as_posix()
            for p in out_dir.rglob("*")
            if p.is_file() and p.name[0] != "." and p.name != "summary.json"
        ),
        "dice": rows,
        "volumes": result.stats,
    }
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
