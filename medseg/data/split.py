"""``medseg data split``: cross-validation folds over a manifest's training cases.

The folds are written as nnU-Net's ``splits_final.json``: a list with one ``{"train": [...], "val":
[...]}`` per fold, by case name, so nnU-Net can use the file as it is and MONAI code can select a
fold's entries by name. The partition is MONAI's ``monai.data.partition_dataset`` (a seeded numpy
shuffle, then every k-th case), applied to the case names sorted, so that the folds depend on the
seed and the set of cases only, not on the order of the manifest.
"""

from __future__ import annotations

from medseg.data.manifest import Manifest
from medseg.errors import InputError


def training_cases(manifest: Manifest) -> list[str]:
    """The case names of the ``training`` list, refused when two entries share one."""
    seen: dict[str, str] = {}
    for entry in manifest.section("training"):
        if entry.case in seen:
            raise InputError(
                f"{manifest.path}: {seen[entry.case]} and {entry.where} are both case {entry.case!r}; "
                'give the entries distinct "case" keys'
            )
        seen[entry.case] = entry.where
    return list(seen)


def split_folds(manifest: Manifest, folds: int = 5, seed: int = 0) -> list[dict[str, list[str]]]:
    """``folds`` folds over the training cases: every case is in exactly one ``val`` list, and each
    fold's ``train`` holds all other cases. The same seed and cases give the same folds."""
    from monai.data import partition_dataset

    cases = sorted(training_cases(manifest))
    if folds < 2:
        raise InputError(f"--folds {folds}: need at least 2 folds")
    if len(cases) < folds:
        raise InputError(f"{manifest.path}: {len(cases)} training cases cannot fill {folds} folds")
    parts = partition_dataset(cases, num_partitions=folds, shuffle=True, seed=seed, even_divisible=False)
    return [
        {"train": sorted(c for j, part in enumerate(parts) if j != i for c in part), "val": sorted(val)}
        for i, val in enumerate(parts)
    ]
