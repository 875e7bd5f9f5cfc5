"""The ``medseg`` command: parse arguments, call a workflow, turn user mistakes into one line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import warnings

from medseg.cli.bundle_cmd import add_bundle_parser
from medseg.cli.data_cmd import add_data_parser
from medseg.cli.evaluate_cmd import add_evaluate_parser
from medseg.cli.train_cmd import add_train_parser


def _demo(args: argparse.Namespace) -> None:
    from medseg.workflows.demo import demo, format_dice

    summary = demo(out_dir=args.out, device=args.device, progress=not args.quiet)
    print(f"Segmented the sample DICOM series in {summary['seconds']} s -> {args.out}/")
    for name in summary["outputs"]:
        print(f"  {name}")
    print("\nOrgan volumes (mL):")
    for row in summary["volumes"]:
        print(f"  {row['name']:<14}{row['volume_ml']:>10.1f}")
    print("\nDice against the sample's reference segmentation (TotalSegmentator output):")
    print(format_dice(summary["dice"]))


def _overrides(pairs: list[str] | None) -> dict:
    """``KEY=VALUE`` pairs (VALUE as JSON where it parses, else a string), as monai.bundle run takes them."""
    import json

    from medseg.errors import InputError

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--override {pair!r}: expected KEY=VALUE, e.g. inferer#sw_batch_size=2")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _segment(args: argparse.Namespace) -> int:
    from medseg.workflows.cases import expand_inputs

    cases = expand_inputs(args.image, series=args.series, all_series=args.all_series, channels=args.channels)
    if len(cases) == 1 and not args.resume:
        return _segment_one(args, cases[0])
    from medseg.workflows.batch import segment_many
    from medseg.workflows.segment import describe_bundle

    print(f"bundle: {describe_bundle(args.bundle)}", flush=True)

    def report(result) -> None:
        reason = f": {result.reason}" if result.reason else ""
        print(f"{result.case}: {result.status} ({result.seconds:.1f} s){reason}", flush=True)

    results = segment_many(
        cases,
        bundle=args.bundle,
        out_dir=args.out,
        device=args.device,
        formats=args.format,
        resume=args.resume,
        progress=not args.quiet,
        on_case=report,
        overrides=_overrides(args.override),
        anonymize=args.anonymize,
        seed=args.seed,
    )
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    done = [r.seconds for r in results if r.status == "done"]
    mean = f"; {sum(done) / len(done):.1f} s per case" if done else ""
    print(
        f"{len(results)} cases: {counts['done']} done, {counts['skipped']} skipped (already done), "
        f"{counts['failed']} failed{mean}"
    )
    for r in results:
        if r.status == "failed":
            print(f"  failed: {r.case}: {r.reason}")
    print(f"summary:   {args.out}/summary.csv, {args.out}/summary.json")
    return 1 if counts["failed"] else 0


def _segment_one(args: argparse.Namespace, case) -> int:
    from medseg.workflows.segment import format_bundle, segment

    result = segment(
        case.images,
        bundle=args.bundle,
        out_dir=args.out,
        device=args.device,
        progress=not args.quiet,
        series=case.series,
        formats=args.format,
        overrides=_overrides(args.override),
        name=case.name,
        anonymize=args.anonymize,
        seed=args.seed,
    )
    print(f"bundle: {format_bundle(*result.bundle)}")
    for what, path in result.files.items():
        print(f"{what}: {path}")
    for fmt, what in (("seg", "DICOM SEG"), ("rtstruct", "RTSTRUCT")):
        if fmt in args.format and what not in result.files:
            print(f"{what}: none written (no labelled voxels)")
    if result.kind == "instances":
        print(f"{len(result.stats)} instances")
    for row in result.stats if result.kind != "instances" else []:
        print(f"  {row['name']:<18}{row['volume_ml']:>10.1f} mL")
    return 0


def _dicom_ls(args: argparse.Namespace) -> None:
    from medseg.workflows.dicom import format_series, list_series

    print(format_series(list_series(args.folder)))


def _dicom_seg(args: argparse.Namespace) -> None:
    from medseg.workflows.dicom import label_map_to_seg, read_label_names

    names = read_label_names(args.labels, args.bundle)
    written = label_map_to_seg(
        args.label, args.dicom_dir, args.out, names, args.series, anonymize=args.anonymize, seed=args.seed
    )
    print(f"DICOM SEG: {written}" if written else "no labelled voxels: no SEG written")


def _dicom_anonymize(args: argparse.Namespace) -> None:
    from medseg.workflows.anonymize import anonymize_folder, format_summary

    print(format_summary(anonymize_folder(args.folder, args.out, seed=args.seed), args.out))


def _add_anonymize_options(p: argparse.ArgumentParser, anonymize: bool = True) -> None:
    if anonymize:
        p.add_argument(
            "--anonymize",
            action="store_true",
            help="de-identify the DICOM outputs (SEG, RTSTRUCT) as medseg dicom anonymize does",
        )
    p.add_argument(
        "--seed",
        default=None,
        help="secret that makes the anonymisation repeatable: the same seed gives the same new UIDs, "
        "names, IDs and date shift in every run (so a SEG matches a series anonymised separately); "
        "default: a new random mapping each run",
    )


def _add_run_options(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: the GPU if present)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg", description="Medical image segmentation with MONAI bundles."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="segment the embedded sample CT (DICOM) and print Dice per organ")
    _add_run_options(p, default_out="outputs/demo")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "segment", help="segment images (NIfTI, DICOM, NRRD, MetaImage, TIFF, PNG) with any bundle"
    )
    p.add_argument(
        "image",
        nargs="+",
        help="image file (NIfTI, NRRD, MHA/MHD, TIFF, PNG/JPEG), DICOM series folder, folder of images, "
        "glob pattern (quoted) or JSON datalist; several are segmented one after the other",
    )
    p.add_argument(
        "--bundle",
        default="abdomen_ct_segmentation",
        help="bundle name (shipped or installed; see medseg bundle ls) or a folder path such as ./my_bundle",
    )
    p.add_argument(
        "--channels",
        action="store_true",
        help="the images are the channel files of ONE case, in the bundle's order",
    )
    p.add_argument(
        "--override",
        action="append",
        metavar="KEY=VALUE",
        help="override a bundle config value, as monai.bundle run does (e.g. inferer#sw_batch_size=2)",
    )
    p.add_argument(
        "--series", default=None, help="series index or UID (prefix) when the folder holds several"
    )
    p.add_argument(
        "--all-series", action="store_true", help="segment every series of a DICOM folder (one case each)"
    )
    p.add_argument("--resume", action="store_true", help="skip cases whose outputs are already in --out")
    p.add_argument(
        "--format",
        default="auto",
        help="output formats, comma-separated: auto (the input's format; NIfTI for DICOM), nifti, nrrd, "
        "mha, tiff, seg (DICOM SEG), rtstruct (DICOM RT structure set); seg and rtstruct need a DICOM folder",
    )
    _add_anonymize_options(p)
    _add_run_options(p, default_out="outputs/segment")
    p.set_defaults(func=_segment)

    p = sub.add_parser("dicom", help="DICOM utilities")
    dicom = p.add_subparsers(dest="dicom_command", required=True)
    p = dicom.add_parser("ls", help="list the image series in a folder tree (no patient identifiers)")
    p.add_argument("folder", help="folder to scan (recursively)")
    p.set_defaults(func=_dicom_ls)
    p = dicom.add_parser("seg", help="write a label map (NIfTI) as a DICOM SEG referencing its DICOM series")
    p.add_argument("label", help="label map, NIfTI (any orientation of the same scan)")
    p.add_argument("dicom_dir", help="folder of the source DICOM series")
    p.add_argument("--out", required=True, help="SEG file to write, e.g. seg.dcm")
    p.add_argument("--series", default=None, help="series index or UID when the folder holds several")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labels", default=None, help='JSON file {"1": "liver", ...} naming the label values')
    group.add_argument(
        "--bundle", default="abdomen_ct_segmentation", help="take label names from this bundle (default)"
    )
    _add_anonymize_options(p)
    p.set_defaults(func=_dicom_seg)
    p = dicom.add_parser(
        "anonymize", help="copy a folder of DICOM files de-identified (dicognito; the input is not changed)"
    )
    p.add_argument("folder", help="folder to read (recursively)")
    p.add_argument("out", help="folder to write: one sub-folder per series, files named by their new UIDs")
    _add_anonymize_options(p, anonymize=False)
    p.set_defaults(func=_dicom_anonymize)

    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_data_parser(sub)
    add_bundle_parser(sub)
    return parser


def _show_own_warnings() -> None:
    """medseg's own warnings (jittered slice positions, skipped files) in one line each; library
    warnings stay hidden unless --debug."""
    from medseg.errors import MedsegWarning

    warnings.filterwarnings("default", category=MedsegWarning)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"medseg: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    from medseg.privacy import scrubbed_output

    with scrubbed_output():  # nothing printed, logged or warned shows an identifier read from DICOM
        try:
            return _main(argv)
        except Exception:  # --debug lets errors through: their traceback is scrubbed too
            import traceback

            traceback.print_exc()
            return 1  # as Python exits on an uncaught exception


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's time limit, `kill`) ends the run as Ctrl-C does: the case being
    written is dropped with its staging folder, the finished cases and the summary stay."""

    def stop(signum, frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling ``overrides`` (nargs="*") at the first option: take the key=value
    # pairs written after options (``medseg train B --out R max_epochs=2``) too.
    if extra and args.command == "train" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _stop_on_sigterm()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if not args.debug:
        warnings.filterwarnings("ignore")
        _show_own_warnings()
        if args.command != "train":  # library chatter is not for users (training logs are); ignite
            logging.disable(logging.ERROR)  # logs a failed run as ERROR before medseg says it in one line
    from medseg.errors import MedsegError

    try:
        code = args.func(args) or 0
    except MedsegError as err:
        if args.debug:
            raise
        print(f"medseg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medseg: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
