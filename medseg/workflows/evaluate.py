"""``medseg evaluate``: score predicted segmentations against references, case by case.

Cases come as two files, two folders (matched by case name) or a datalist JSON
(``medseg.workflows.evaluate_cases``). Each prediction is brought onto its reference's grid (nearest
neighbour, with a warning) when the grids differ. What is scored depends on the mode:

- labels: each label value of two label maps: Dice, HD95, NSD (``medseg.metrics.surface``), volumes;
- regions: overlapping regions, one 0/1 channel each (a multi-channel file, channel last, as
  ``medseg segment`` writes ``<case>_regions``), or composed from label maps by ``regions`` (BraTS
  2023: TC = 1,3; WT = 1,2,3; ET = 3); channels are matched to regions by position;
- instances: label maps whose ids are objects (``medseg.workflows.instances.instance_scores``).

Lesion-wise scores (BraTS 2023 rules, ``medseg.metrics.lesion``) can be added to labels and regions.
Every case gets a row for every label seen in any case. Summary rows give, per label and metric, the
mean and median over the cases where the value is a finite number, and their count ``n``: NaN (a label
in neither map; Dice with an empty reference, as MONAI's ``ignore_empty``) and infinite HD95 (a label in
one map only) are left out, as MONAI's metric classes average them; a ``pooled`` row adds up the
detection counts. Everything is computed before anything is written: a bad case leaves no output.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from medseg.errors import InputError, MedsegWarning
from medseg.io.atomic import atomic_path
from medseg.io.case import CaseImage
from medseg.metrics.lesion import (
    BRATS_DILATION,
    BRATS_HD95_PENALTY,
    BRATS_MIN_VOLUME,
    LesionScores,
    lesion_scores,
)
from medseg.metrics.surface import DEFAULT_NSD_TOLERANCE, surface_scores
from medseg.typing import PathLike
from medseg.workflows.evaluate_cases import CasePair, pair_cases, read_pair, units

# Columns that describe a row rather than score it: left out of the summary statistics.
KEYS = ("case", "label", "name", "nsd_tolerance", "volume_unit", "resampled")
COUNTS = ("tp", "fp", "fn")


@dataclass
class EvaluationSettings:
    """What to score and how. Label numbers are label values, or region numbers (1..R) for regions."""

    names: dict[int, str] = field(default_factory=dict)  # label -> name; default label_N / region_N
    labels: tuple[int, ...] | None = None  # None: every named label and every label present
    regions: dict[str, tuple[int, ...]] | None = None  # region name -> label values, in channel order
    nsd_tolerance: float = DEFAULT_NSD_TOLERANCE  # mm (the reference's spacing unit)
    nsd_tolerances: dict[int, float] = field(default_factory=dict)  # per label, overriding the default
    lesions: bool = False
    lesion_dilation: int = BRATS_DILATION
    lesion_min_volume: float = BRATS_MIN_VOLUME
    instances: bool = False


@dataclass
class EvaluationResult:
    rows: list[dict]  # one per case and label (region), or per case for instances
    summary: list[dict]  # mean, median and n per label, then pooled detection counts
    lesions: list[dict]  # one per reference lesion and false-positive component (with lesions)
    files: dict[str, Path]  # what -> path written
    mode: str  # labels, regions or instances
    distance_unit: str
    unmatched: list[str]  # files in one folder only ("pred: name", "reference: name")


def evaluate(
    pred: PathLike, reference: PathLike | None, out_dir: PathLike, settings: EvaluationSettings | None = None
) -> EvaluationResult:
    """Score every case of ``pred`` against ``reference``; write ``evaluation.csv`` and ``evaluation.json``
    (and ``lesions.csv`` with lesions) into ``out_dir``."""
    settings = settings or EvaluationSettings()
    if settings.instances and (settings.lesions or settings.regions):
        raise InputError("--instances scores objects; it does not combine with --lesions or --regions")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another --out")
    pairs, unmatched = pair_cases(pred, reference, prefer=_segment_outputs(settings))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        warnings.warn(
            f"{len(unmatched)} file(s) with no partner, not scored: {shown}", MedsegWarning, stacklevel=2
        )
    rows, lesion_rows, cases = [], [], []
    for pair in pairs:
        case_rows, case_lesions, case = _evaluate_pair(pair, settings)
        rows += case_rows
        lesion_rows += case_lesions
        cases.append(case)
    mode = "instances" if settings.instances else "regions" if any(c["regions"] for c in cases) else "labels"
    if mode == "labels":
        rows = _fill_missing(rows, cases, settings)
    summary = summary_rows(rows) + pooled_rows(rows)
    meta = {
        "mode": mode,
        "distance_unit": cases[0]["distance_unit"],
        "settings": _settings_json(settings),
        "cases": [{k: v for k, v in c.items() if k not in ("empty",)} for c in cases],
        "unmatched": unmatched,
    }
    files = write_results(out_dir, rows, summary, lesion_rows if settings.lesions else None, meta)
    return EvaluationResult(rows, summary, lesion_rows, files, mode, meta["distance_unit"], unmatched)


def _segment_outputs(settings: EvaluationSettings) -> tuple[str, ...]:
    """Which of ``medseg segment``'s outputs in a case folder is the prediction, best first."""
    if settings.instances:
        return ("instances",)
    return ("regions", "seg") if settings.regions else ("seg", "regions")


def _evaluate_pair(pair: CasePair, settings: EvaluationSettings) -> tuple[list[dict], list[dict], dict]:
    pred, ref, resampled = read_pair(pair)
    if resampled:
        warnings.warn(
            f"{pair.name}: the prediction is not on the reference's grid (shape {ref.spatial_shape}, "
            "affine): resampled onto it (nearest neighbour)",
            MedsegWarning,
            stacklevel=3,
        )
    rows, lesions = score_case(pair.name, pred, ref, settings)
    for row in rows:
        row["resampled"] = resampled
    case = {
        "case": pair.name,
        "pred": str(pair.pred),
        "reference": str(pair.reference),
        "resampled": resampled,
        "regions": bool(settings.regions) or pred.channels > 1 or ref.channels > 1,
        "distance_unit": units(ref.kind, ref.spatial_dims)[0],
        "empty": partial(_empty_row, pair.name, ref, settings),
    }
    return rows, lesions, case


def _empty_row(name: str, ref: CaseImage, settings: EvaluationSettings, label: int) -> dict:
    """The row of a label in neither map of a case: scored, with the case's spacing and units, on two
    one-voxel empty maps (so that it follows the same conventions as every other row)."""
    empty = replace(ref, array=np.zeros((1,) * ref.spatial_dims, np.uint8))
    return score_case(name, empty, empty, replace(settings, labels=(label,)))[0][0]


def score_case(
    name: str, pred: CaseImage, reference: CaseImage, settings: EvaluationSettings
) -> tuple[list[dict], list[dict]]:
    """Rows (one per label or region) and lesion rows of one case whose two sides share a grid."""
    if settings.instances:
        return [_instance_row(name, pred, reference)], []
    spacing = reference.geometry.spacing[: reference.spatial_dims]
    _, volume_unit, unit_volume = units(reference.kind, reference.spatial_dims)
    voxel = float(np.prod(spacing)) * unit_volume
    regions = bool(settings.regions) or pred.channels > 1 or reference.channels > 1
    scores, masks = (_region_scores if regions else _label_scores)(name, pred, reference, settings, spacing)
    rows, lesion_rows = [], []
    for label, score in scores.items():
        default = f"{'region' if regions else 'label'}_{label}"
        row = {"case": name, "label": label, "name": settings.names.get(label, default)}
        pv, rv = score.pop("pred_voxels"), score.pop("ref_voxels")
        row.update(score, nsd_tolerance=_tolerance(settings, label), pred_voxels=pv, ref_voxels=rv)
        row.update(pred_volume=pv * voxel, ref_volume=rv * voxel, volume_unit=volume_unit)
        if settings.lesions:
            found = lesion_scores(
                *masks(label), spacing, settings.lesion_dilation, settings.lesion_min_volume
            )
            row.update(found.scores())
            lesion_rows += _lesion_rows(row, found, voxel)
        rows.append(row)
    return rows, lesion_rows


Masks = Callable[[int], tuple[np.ndarray, np.ndarray]]


def _tolerance(settings: EvaluationSettings, label: int) -> float:
    return settings.nsd_tolerances.get(label, settings.nsd_tolerance)


def _label_scores(
    name: str, pred: CaseImage, reference: CaseImage, settings: EvaluationSettings, spacing: tuple[float, ...]
) -> tuple[dict[int, dict], Masks]:
    """Scores of each label of two label maps (one pass finds every label's box), and a function
    that gives a label's two masks."""
    p, r = pred.array, reference.array
    counts = [_voxel_counts(a) for a in (p, r)]
    if settings.labels:
        wanted = list(settings.labels)
    else:
        wanted = sorted((set(counts[0]) | set(counts[1]) | set(settings.names)) - {0})
    wanted = [int(v) for v in wanted]
    tolerances = {v: _tolerance(settings, v) for v in wanted}
    scores = surface_scores(p, r, wanted, spacing, tolerances)
    for v in wanted:
        scores[v].update(pred_voxels=int(counts[0].get(v, 0)), ref_voxels=int(counts[1].get(v, 0)))
    return scores, lambda v: (p == v, r == v)


def _voxel_counts(labels: np.ndarray) -> dict[int, int]:
    """Voxels per label value present (one bincount pass; np.unique would sort the whole volume)."""
    if int(labels.max(initial=0)) >= 1 << 24:  # sparse huge ids: a bincount would be mostly zeros
        return {int(k): int(n) for k, n in zip(*np.unique(labels, return_counts=True), strict=True)}
    counts = np.bincount(labels.ravel())
    return {int(k): int(counts[k]) for k in np.flatnonzero(counts)}


def _region_scores(
    name: str, pred: CaseImage, reference: CaseImage, settings: EvaluationSettings, spacing: tuple[float, ...]
) -> tuple[dict[int, dict], Masks]:
    p, r = (_regions_of(name, side, settings.regions) for side in (pred, reference))
    if len(p) != len(r):
        raise InputError(f"{name}: the prediction has {len(p)} regions and the reference {len(r)}")
    scores = {}
    for i in settings.labels or range(1, len(p) + 1):
        if not 0 < i <= len(p):
            raise InputError(f"{name}: --labels-to-score {i}: there are regions 1 to {len(p)} only")
        pi, ri = p[i - 1].view(np.uint8), r[i - 1].view(np.uint8)
        scores[i] = surface_scores(pi, ri, [1], spacing, _tolerance(settings, i))[1]
        scores[i].update(pred_voxels=int(np.count_nonzero(pi)), ref_voxels=int(np.count_nonzero(ri)))
    return scores, lambda i: (p[i - 1], r[i - 1])


def _regions_of(name: str, side: CaseImage, regions: dict[str, tuple[int, ...]] | None) -> list[np.ndarray]:
    """One boolean mask per region: a multi-channel side's channels, or a label map composed by
    ``regions``."""
    if side.channels > 1:
        stack = side.channel_first()
        if not np.isin(stack, (0, 1)).all():
            raise InputError(f"{side.path}: a multi-channel file must hold 0/1 region masks, one per channel")
        if regions and len(regions) != len(stack):
            raise InputError(f"{side.path}: {len(stack)} channels but {len(regions)} regions in --regions")
        return [c.astype(bool) for c in stack]
    if not regions:
        raise InputError(f"{name}: one side holds region channels, the other a label map: give --regions")
    return [np.isin(side.array, ids) for ids in regions.values()]


def _instance_row(name: str, pred: CaseImage, reference: CaseImage) -> dict:
    from medseg.workflows.instances import instance_scores

    if pred.channels != 1 or reference.channels != 1:
        raise InputError(f"{name}: --instances needs one instance label map per side, not several channels")
    return {
        "case": name,
        "label": "",
        "name": "instances",
        **instance_scores([reference.array], [pred.array]),
    }


def _lesion_rows(row: dict, found: LesionScores, voxel: float) -> list[dict]:
    """One row per reference lesion, then per false-positive component; volumes in the rows' unit."""
    head = {"case": row["case"], "label": row["label"], "name": row["name"]}
    rows = [
        {**head, "kind": "reference", "lesion": x.lesion, "voxels": x.voxels, "volume": x.voxels * voxel,
         "pred_components": len(x.pred_components), "dice": x.dice, "hd95": x.hd95, "counted": x.counted}
        for x in found.lesions
    ]  # fmt: skip
    rows += [
        {**head, "kind": "false_positive", "lesion": comp, "voxels": voxels, "volume": voxels * voxel,
         "pred_components": 1, "dice": 0.0, "hd95": BRATS_HD95_PENALTY, "counted": True}
        for comp, voxels in found.false_positives
    ]  # fmt: skip
    return [{**r, "volume_unit": row["volume_unit"]} for r in rows]


def _fill_missing(rows: list[dict], cases: list[dict], settings: EvaluationSettings) -> list[dict]:
    """Every case gets a row for every label any case has (a label in neither map scores as empty)."""
    labels = sorted({r["label"] for r in rows})
    have = {(r["case"], r["label"]): r for r in rows}
    out = []
    for case in cases:
        for label in labels:
            row = have.get((case["case"], label))
            if row is None:
                row = {**case["empty"](label), "resampled": case["resampled"]}
            out.append(row)
    return out


def summary_rows(rows: list[dict]) -> list[dict]:
    """Per label: the mean, median and count of each metric's finite values over the cases."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        group = [r for r in rows if r["label"] == label]
        metrics = [k for k in group[0] if k not in KEYS and isinstance(group[0][k], int | float)]
        values = {k: np.array([r[k] for r in group], float) for k in metrics}
        finite = {k: v[np.isfinite(v)] for k, v in values.items()}
        head = {"label": label, "name": group[0]["name"]}
        for stat, reduce in (("mean", np.mean), ("median", np.median)):
            out.append(
                {
                    "case": stat,
                    **head,
                    **{k: float(reduce(v)) if v.size else math.nan for k, v in finite.items()},
                }
            )
        out.append({"case": "n", **head, **{k: int(v.size) for k, v in finite.items()}})
    return out


def pooled_rows(rows: list[dict]) -> list[dict]:
    """Per label: detection counts added over the cases, and the precision, recall and F1 they give
    (lesions: NaN when undefined; instances: 0, as StarDist's ``matching_dataset``)."""
    out = []
    for prefix, empty in (("lesion_", math.nan), ("", 0.0)):
        if not rows or f"{prefix}tp" not in rows[0]:
            continue
        for label in dict.fromkeys(r["label"] for r in rows):
            tp, fp, fn = (sum(r[f"{prefix}{c}"] for r in rows if r["label"] == label) for c in COUNTS)
            name = next(r["name"] for r in rows if r["label"] == label)
            ratios = {"precision": (tp, tp + fp), "recall": (tp, tp + fn), "f1": (2 * tp, 2 * tp + fp + fn)}
            if not prefix:
                ratios["ap"] = (tp, tp + fp + fn)
            pooled = {f"{prefix}{k}": n / d if d else empty for k, (n, d) in ratios.items()}
            counts = {f"{prefix}tp": tp, f"{prefix}fp": fp, f"{prefix}fn": fn}
            out.append({"case": "pooled", "label": label, "name": name, **counts, **pooled})
    return out


def _settings_json(settings: EvaluationSettings) -> dict:
    return {
        "names": {str(k): v for k, v in settings.names.items()},
        "labels": list(settings.labels) if settings.labels else None,
        "regions": {k: list(v) for k, v in settings.regions.items()} if settings.regions else None,
        "nsd_tolerance": settings.nsd_tolerance,
        "nsd_tolerances": {str(k): v for k, v in settings.nsd_tolerances.items()},
        "lesions": settings.lesions,
        "lesion_dilation": settings.lesion_dilation,
        "lesion_min_volume": settings.lesion_min_volume,
        "lesion_hd95_penalty": BRATS_HD95_PENALTY,
        "instances": settings.instances,
    }


def _csv_value(value):
    return round(value, 6) if isinstance(value, float) and math.isfinite(value) else value


def _json_value(value):
    """Strict JSON: NaN (undefined) as null, an infinite distance as the string "inf"."""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else round(float(value), 6)
    return value.item() if isinstance(value, np.generic) else value


def _csv_text(rows: list[dict]) -> str:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: _csv_value(v) for k, v in r.items()} for r in rows)
    return buffer.getvalue()


def write_results(
    out_dir: Path, rows: list[dict], summary: list[dict], lesions: list[dict] | None, meta: dict
) -> dict[str, Path]:
    """``evaluation.csv`` (case rows, then summary rows), ``evaluation.json`` (``meta``, ``rows``,
    ``summary``, ``lesions``) and, given lesions, ``lesions.csv``; each written atomically."""
    texts = {"csv": _csv_text(rows + summary)}
    document = {
        **meta,
        "rows": rows,
        "summary": summary,
        **({"lesions": lesions} if lesions is not None else {}),
    }
    texts["json"] = json.dumps(_walk(document), indent=1, allow_nan=False, default=str) + "\n"
    if lesions is not None:
        texts["lesions"] = _csv_text(lesions) if lesions else "case,label,name,kind,lesion\n"
    names = {"csv": "evaluation.csv", "json": "evaluation.json", "lesions": "lesions.csv"}
    files = {}
    for what, text in texts.items():
        with atomic_path(out_dir / names[what]) as tmp:
            tmp.write_text(text)
        files[what] = out_dir / names[what]
    return files


def _walk(value):
    if isinstance(value, dict):
        return {k: _walk(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v) for v in value]
    return _json_value(value)
