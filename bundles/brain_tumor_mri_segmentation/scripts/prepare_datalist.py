"""Write the Decathlon datalist of a BraTS folder (one sub-folder per case), with the four channels in
the bundle's order (T1, T1c, T2, FLAIR) and a seeded training/validation split.

    python scripts/prepare_datalist.py /data/BraTS2021_Training_Data
    python scripts/prepare_datalist.py /data/BraTS2023-GLI --release 2023 --output my_datalist.json

Paths are relative to the folder (the train config's ``dataset_dir``); cases without a label go to
``test``. Only the standard library: the model zoo's own script needs scikit-learn for the split.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

# File name endings per release: T1, T1c, T2, FLAIR (the bundle's channel order), then the label.
RELEASES = {
    "2021": (
        "_t1",
        "_t1ce",
        "_t2",
        "_flair",
        "_seg",
    ),  # BraTS 2018-2021: BraTS2021_00000/BraTS2021_00000_t1.nii.gz
    "2023": ("-t1n", "-t1c", "-t2w", "-t2f", "-seg"),  # BraTS 2023 glioma: BraTS-GLI-00000-000/...-t1n.nii.gz
}


def case_entry(folder: Path, release: str = "2021") -> dict:
    """The datalist entry of one case folder; a missing channel file stops with its path."""
    *channels, label = (f"{folder.name}/{folder.name}{end}.nii.gz" for end in RELEASES[release])
    for name in channels:
        if not (folder.parent / name).is_file():
            raise SystemExit(f"{folder.parent / name}: missing (each case needs all four channels)")
    return {"image": channels, "label": label} if (folder.parent / label).is_file() else {"image": channels}


def build_datalist(
    dataset_dir: Path, release: str = "2021", val_fraction: float = 0.2, seed: int = 0
) -> dict:
    """``training``/``validation`` (labelled cases, split at random with ``seed``) and ``test``."""
    folders = sorted(p for p in dataset_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    cases = [case_entry(folder, release) for folder in folders]
    labelled = [case for case in cases if "label" in case]
    random.Random(seed).shuffle(labelled)
    n_val = round(len(labelled) * val_fraction)
    test = [case for case in cases if "label" not in case]
    return {"training": labelled[n_val:], "validation": labelled[:n_val], "test": test}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset_dir", type=Path, help="folder with one sub-folder per case")
    parser.add_argument(
        "--release", choices=sorted(RELEASES), default="2021", help="file naming (default 2021)"
    )
    parser.add_argument(
        "--val_fraction", type=float, default=0.2, help="share of labelled cases for validation"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--output", type=Path, default=None, help="default: DATASET_DIR/datalist.json")
    args = parser.parse_args(argv)
    datalist = build_datalist(args.dataset_dir, args.release, args.val_fraction, args.seed)
    output = args.output or args.dataset_dir / "datalist.json"
    output.write_text(json.dumps(datalist, indent=1))
    counts = ", ".join(f"{len(cases)} {key}" for key, cases in datalist.items())
    print(f"{output}: {counts}")


if __name__ == "__main__":
    main()
