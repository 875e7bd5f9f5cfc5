"""``medseg data verify|datalist|split``: parse, call ``medseg.data``, print."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _verify(args: argparse.Namespace) -> int:
    from medseg.data.verify import verify_dataset

    report = verify_dataset(args.manifest, args.root, read_images=args.read_images)
    print(report.format())
    return 0 if report.ok else 1


def _datalist(args: argparse.Namespace) -> int:
    from medseg.data.datalist import build_manifest, write_json

    _refuse_overwrite(args.out, Path(args.folder) / "dataset.json", "the folder's dataset.json")
    manifest = build_manifest(args.folder)
    if args.out is None:
        print(json.dumps(manifest, indent=2, ensure_ascii=False))
        return 0
    write_json(manifest, args.out)
    print(
        f"{args.out}: {len(manifest['training'])} training and {len(manifest['test'])} test cases, "
        f"{len(manifest['sha256'])} files with sha256; fill in licence, citation and source"
    )
    return 0


def _split(args: argparse.Namespace) -> int:
    from medseg.data.datalist import write_json
    from medseg.data.manifest import load_manifest
    from medseg.data.split import split_folds

    _refuse_overwrite(args.out, Path(args.manifest), "the manifest")
    folds = split_folds(load_manifest(args.manifest), args.folds, args.seed)
    if args.out is None:
        print(json.dumps(folds, indent=2))
        return 0
    write_json(folds, args.out)
    sizes, cases = ", ".join(str(len(f["val"])) for f in folds), sum(len(f["val"]) for f in folds)
    print(
        f"{args.out}: {len(folds)} folds over {cases} training cases "
        f"(validation sizes {sizes}), seed {args.seed}"
    )
    return 0


def _refuse_overwrite(out: str | None, protected: Path, what: str) -> None:
    from medseg.errors import InputError

    if out is not None and Path(out).resolve() == protected.resolve():
        raise InputError(f"{out}: would replace {what}; choose another --out file")


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset manifests: check a dataset, build a datalist, make folds")
    data = p.add_subparsers(dest="data_command", required=True)

    p = data.add_parser(
        "verify",
        help="check a dataset against its manifest: files, sha256, grids, channels, label values (read-only)",
    )
    p.add_argument("manifest", help="manifest JSON (data_manifests/*.json, an MSD dataset.json, ...)")
    p.add_argument(
        "--root",
        default=None,
        help="folder the manifest's paths are relative to (default: the manifest's folder)",
    )
    p.add_argument(
        "--read-images",
        action="store_true",
        help="also read every NIfTI image's voxels, not only its header (finds damaged data; slower)",
    )
    p.set_defaults(func=_verify)

    p = data.add_parser(
        "datalist",
        help="write a manifest (with sha256 per file) for a folder in the nnU-Net v2 or MSD layout",
    )
    p.add_argument("folder", help="dataset folder holding imagesTr/, labelsTr/ (and imagesTs/, dataset.json)")
    p.add_argument("--out", default=None, help="manifest file to write (default: print it)")
    p.set_defaults(func=_datalist)

    p = data.add_parser(
        "split", help="cross-validation folds over a manifest's training cases (splits_final.json)"
    )
    p.add_argument("manifest", help="manifest JSON")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default: 5)")
    p.add_argument(
        "--seed", type=int, default=0, help="shuffle seed; the same seed gives the same folds (default: 0)"
    )
    p.add_argument("--out", default=None, help="file to write, e.g. splits_final.json (default: print it)")
    p.set_defaults(func=_split)
