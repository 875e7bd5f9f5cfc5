"""``medseg bundle ls|info|install|download|export``: parse, call ``medseg.bundle.catalog``, print."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medseg.bundle.catalog import BundleInfo

COLUMNS = ("name", "version", "task", "inputs", "labels", "licence", "location")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _labels(labels: tuple[str, ...], width: int = 36) -> str:
    """The foreground labels, as many as fit, then ``+N``."""
    names = [name for name in labels if name.lower() != "background"]
    for shown in range(len(names), 0, -1):
        rest = len(names) - shown
        text = ", ".join(names[:shown]) + (f" +{rest}" if rest else "")
        if len(text) <= width:
            return text
    return f"{len(names)} labels" if names else "-"


def format_bundles(bundles: list[BundleInfo], shipped_dir: Path, user_dir: Path) -> str:
    """The table of ``medseg bundle ls``, then where the two kinds of bundles live."""
    rows = [
        (b.name, b.version, _short(b.task, 40), b.inputs, _labels(b.labels), _short(b.licence, 28), b.origin)
        for b in bundles
    ]
    widths = [max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]
    lines += ["", f"shipped: {shipped_dir}", f"user:    {user_dir} (set MEDSEG_BUNDLE_DIR to move it)"]
    return "\n".join(lines)


def format_info(info: dict) -> str:
    """``medseg bundle info``: what the bundle says about itself, its configs and weights."""

    def field(label: str, value: object) -> str:
        head = f"  {label + ':':<14}"
        return textwrap.fill(str(value) or "-", width=100, initial_indent=head, subsequent_indent=" " * 16)

    labels = ", ".join(f"{k} {v}" for k, v in info["labels"].items()) or "-"
    weights = ", ".join(f"{path} ({'present' if ok else 'MISSING'})" for path, ok in info["weights"].items())
    lines = [
        f"{info['name']} {info['version']} ({info['origin']})",
        field("title", info["title"]),
        field("task", info["task"]),
        field("description", info["description"]),
        field("inputs", info["inputs"]),
        field("labels", labels),
        field("licence", info["licence"]),
        field("authors", info["authors"]),
        field("intended use", info["intended_use"]),
        field("MONAI", f"{info['monai_version'] or '?'} (PyTorch {info['pytorch_version'] or '?'})"),
        field("location", info["location"]),
        field("configs", ", ".join(info["configs"]) or "-"),
        field("weights", weights),
    ]
    lines += [field("reference", ref) for ref in info["references"]]
    return "\n".join(lines)


def _ls(args: argparse.Namespace) -> None:
    from medseg.bundle.catalog import list_bundles
    from medseg.bundle.locate import shipped_bundles_dir, user_bundles_dir

    print(format_bundles(list_bundles(), shipped_bundles_dir(), user_bundles_dir()))


def _info(args: argparse.Namespace) -> None:
    from medseg.bundle.catalog import bundle_info

    print(format_info(bundle_info(args.name)))


def _install(args: argparse.Namespace) -> None:
    from medseg.bundle.catalog import install_bundle

    print(f"installed {install_bundle(args.path, force=args.force)}")


def _download(args: argparse.Namespace) -> None:
    from medseg.bundle.catalog import download_bundle

    folder = download_bundle(args.name, version=args.version, force=args.force, progress=sys.stderr.isatty())
    print(f"downloaded and installed {folder}")


def _export(args: argparse.Namespace) -> None:
    from medseg.training.run_folder import export_run

    print(f"exported {export_run(args.run, args.to, weights=args.weights)}")


def add_bundle_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``medseg bundle ...`` to the ``medseg`` command's subparsers."""
    p = subparsers.add_parser("bundle", help="list, describe, install and download bundles")
    sub = p.add_subparsers(dest="bundle_command", required=True)
    p = sub.add_parser("ls", help="list the shipped bundles and those of the user folder")
    p.set_defaults(func=_ls)
    p = sub.add_parser("info", help="what a bundle says about itself, its configs and weights")
    p.add_argument("name", help="bundle name, or its folder written as a path (./name)")
    p.set_defaults(func=_info)
    p = sub.add_parser("install", help="copy a bundle folder or model zoo zip into the user folder")
    p.add_argument("path", help="bundle folder, or zip with one top folder NAME/ (the model zoo's)")
    p.add_argument("--force", action="store_true", help="replace an installed bundle of the same name")
    p.set_defaults(func=_install)
    p = sub.add_parser("download", help="download a MONAI model zoo bundle into the user folder (internet)")
    p.add_argument("name", help="model zoo bundle name, e.g. spleen_ct_segmentation")
    p.add_argument("--version", default=None, help="bundle version (default: the latest)")
    p.add_argument("--force", action="store_true", help="replace an installed bundle of the same name")
    p.set_defaults(func=_download)
    p = sub.add_parser("export", help="make a bundle of a training run folder (configs, docs, weights)")
    p.add_argument("run", help="run folder written by medseg train")
    p.add_argument("--to", required=True, help="new bundle folder (must not exist)")
    p.add_argument(
        "--weights",
        choices=("final", "best"),
        default="final",
        help="the final weights (default) or the best by validation (models/model_best.pt)",
    )
    p.set_defaults(func=_export)
