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
    p.set_defaults(func=_train)
