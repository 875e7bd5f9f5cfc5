"""``medseg train``: parse, call ``medseg.workflows.train``, say where the run is."""

from __future__ import annotations

import argparse


def _train(args: argparse.Namespace) -> None:
    from medseg.workflows.train import train

    run = train(
        args.bundle,
        args.overrides,
        config=args.config,
        out=args.out,
        resume=args.resume,
        nproc_per_node=args.nproc_per_node,
        nnodes=args.nnodes,
        rdzv_endpoint=args.rdzv_endpoint,
        init=args.init,
        freeze=args.freeze,
        freeze_pattern=args.freeze_pattern,
    )
    print(f"run folder: {run.run_dir}{' (resumed)' if run.resumed else ''}")
    for name in ("model.pt", "model_best.pt"):
        if (run.run_dir / "models" / name).is_file():
            print(f"  models/{name}")
    print(f"make a bundle of it: medseg bundle export {run.run_dir} --to PATH")


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a bundle in a run folder (runs/<bundle>/<time>/); the bundle is not changed"
    )
    p.add_argument("bundle", help="bundle name or folder")
    p.add_argument("overrides", nargs="*", help="config overrides as key=value, e.g. max_epochs=2")
    p.add_argument("--config", default="train", help="config name under configs/ (default: train)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<bundle>/<YYYYmmdd-HHMMSS>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (default: the bundle's latest under runs/) from its latest "
        "checkpoint; starts a new run where there is none",
    )
    p.add_argument("--nproc-per-node", type=int, default=1, help="processes (GPUs) per machine (torchrun)")
    p.add_argument("--nnodes", type=int, default=1, help="machines (torchrun; needs --rdzv-endpoint, --out)")
    p.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of the rendezvous, same on every machine")
    p.add_argument(
        "--init",
        default=None,
        help="start from these weights: a .pt file, a bundle (name or folder) or a run folder; the "
        "tensors whose name and shape fit are loaded, the others listed",
    )
    p.add_argument("--freeze", type=int, default=0, help="hold the loaded weights still for N iterations")
    p.add_argument(
        "--freeze-pattern",
        default=None,
        help="freeze only loaded parameters matching this regular expression",
    )
    p.set_defaults(func=_train)
