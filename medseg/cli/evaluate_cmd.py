"""``medseg evaluate PRED REF``: parse, call ``medseg.workflows.evaluate``, print."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medseg.workflows.evaluate import EvaluationResult, EvaluationSettings


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predictions against references: Dice, HD95, NSD, volumes, lesion-wise, instances",
        description="Score predictions against references (files, two folders matched by case name, or a "
        'datalist JSON of {"pred": ..., "label": ...} entries) and write evaluation.csv/.json.',
    )
    p.add_argument(
        "pred", help="predicted label map, folder of them (or of medseg segment outputs), or datalist JSON"
    )
    p.add_argument(
        "reference", nargs="?", default=None, help="reference label map or folder (none for a datalist)"
    )
    p.add_argument("--out", default="outputs/evaluate", help="output folder (default: outputs/evaluate)")
    names = p.add_mutually_exclusive_group()
    names.add_argument(
        "--labels",
        default=None,
        help='JSON naming the labels: {"1": "liver"}, {"liver": 1} or a dataset.json',
    )
    names.add_argument(
        "--bundle", default=None, help="take label (or region) names from this bundle's metadata"
    )
    p.add_argument("--labels-to-score", default=None, help="labels (numbers or names) to score, e.g. 1,2")
    p.add_argument(
        "--regions",
        default=None,
        help="overlapping regions composed from label maps, in the order of any region channels, e.g. "
        "'TC=1,3;WT=1,2,3;ET=3'; 'brats' is that (BraTS 2023 labels, MONAI's channel order), "
        "'brats2021' the same with ET = 4",
    )
    p.add_argument(
        "--nsd-tolerance",
        default="2",
        help="NSD tolerance in mm: one value, or per label, e.g. '2,liver=3,5=1' (default: 2)",
    )
    p.add_argument(
        "--lesions", action="store_true", help="add lesion-wise Dice, HD95 and detection F1 (BraTS 2023)"
    )
    p.add_argument(
        "--lesion-dilation",
        type=int,
        default=3,
        help="voxels: reference lesions this close are one, predictions this close match (BraTS: 3; METs 1)",
    )
    p.add_argument(
        "--lesion-min-volume",
        type=float,
        default=50.0,
        help="mm^3: smaller reference lesions are not scored (BraTS: 50; METs 2)",
    )
    p.add_argument("--instances", action="store_true", help="the label maps hold object ids: instance scores")
    p.set_defaults(func=_evaluate)


def _settings(args: argparse.Namespace) -> EvaluationSettings:
    from medseg.errors import InputError
    from medseg.workflows.evaluate import EvaluationSettings
    from medseg.workflows.evaluate_cases import (
        bundle_label_names,
        label_numbers,
        parse_regions,
        parse_tolerance,
        read_label_names,
    )

    names = (
        read_label_names(args.labels)
        if args.labels
        else bundle_label_names(args.bundle)
        if args.bundle
        else {}
    )
    regions = parse_regions(args.regions) if args.regions else None
    if regions:
        names = {i: name for i, name in enumerate(regions, start=1)}
    default, per_label = parse_tolerance(args.nsd_tolerance, names)
    if args.lesion_dilation < 0 or not args.lesion_min_volume >= 0:
        raise InputError("--lesion-dilation and --lesion-min-volume must be >= 0")
    return EvaluationSettings(
        names=names,
        labels=label_numbers(args.labels_to_score, names) if args.labels_to_score else None,
        regions=regions,
        nsd_tolerance=2.0 if default is None else default,
        nsd_tolerances=per_label,
        lesions=args.lesions,
        lesion_dilation=args.lesion_dilation,
        lesion_min_volume=args.lesion_min_volume,
        instances=args.instances,
    )


def _evaluate(args: argparse.Namespace) -> int:
    from medseg.workflows.evaluate import evaluate

    result = evaluate(args.pred, args.reference, args.out, _settings(args))
    print(format_summary(result))
    return 0


def _cell(summary: dict, rows: list[dict], key: str) -> str:
    """The mean; ``inf`` when every case with the label has it in one map only, ``*`` when some do."""
    value = summary.get(key, math.nan)
    infinite = any(r.get(key) == math.inf for r in rows)
    if isinstance(value, float) and math.isnan(value):
        return "inf" if infinite else "-"
    return (f"{value:.3f}" if isinstance(value, float) else str(value)) + ("*" if infinite else "")


def format_summary(result: EvaluationResult) -> str:
    """Per label: mean Dice, HD95 and NSD (and lesion-wise Dice, HD95, F1; or instance scores), then
    where the tables went."""
    means = [r for r in result.summary if r["case"] == "mean"]
    cases = len({r["case"] for r in result.rows})
    if result.mode == "instances":
        cols = [
            ("f1", "F1"),
            ("ap", "AP@0.5"),
            ("panoptic_quality", "PQ"),
            ("mean_ap", "mAP"),
            ("cell_iou", "IoU"),
        ]
    else:
        unit = result.distance_unit
        cols = [("dice", "Dice"), ("hd95", f"HD95 {unit}"), ("nsd", "NSD")]
        if means and "lesion_dice" in means[0]:
            cols += [
                ("lesion_dice", "lesion Dice"),
                ("lesion_hd95", f"lesion HD95 {unit}"),
                ("lesion_f1", "lesion F1"),
            ]
    width = max([len(str(r["name"])) for r in means] + [5]) + 2
    widths = [max(len(title) + 2, 9) for _, title in cols]
    lines = [
        f"{cases} case{'s' * (cases != 1)} ({result.mode}): per label, the mean over the cases that define it"
    ]
    lines.append(
        f"  {'label':<{width}}" + "".join(f"{t:>{w}}" for (_, t), w in zip(cols, widths, strict=True))
    )
    for mean in means:
        rows = [r for r in result.rows if r["label"] == mean["label"]]
        cells = "".join(f"{_cell(mean, rows, key):>{w}}" for (key, _), w in zip(cols, widths, strict=True))
        lines.append(f"  {str(mean['name']):<{width}}" + cells)
    if result.mode != "instances":
        lines.append(
            "  -: no case defines it; inf: the label is in one map only (HD95 infinite); *: in some cases"
        )
    lines.append(f"written: {', '.join(str(p) for p in result.files.values())}")
    return "\n".join(lines)
