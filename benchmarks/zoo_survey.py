"""Which Project-MONAI/model-zoo bundles medseg's ``BundleEngine`` can load, one bundle at a time.

    .venv/bin/python benchmarks/zoo_survey.py                    # every bundle; writes zoo_survey.md
    .venv/bin/python benchmarks/zoo_survey.py --only spleen_ct_segmentation vista3d --timeout 300

For every bundle under ``models/`` of a model-zoo snapshot (a bare git repository, default the
mirror at the commit the tests vendor) that has ``configs/inference.json|yaml`` and
``configs/metadata.json``: export its ``configs/``, ``LICENSE`` and ``scripts/`` (the bundle's own
code, which ``monai.bundle download`` ships and some configs import; never ``models/`` or
``large_files.yml`` downloads) to a temporary folder, build its own ``network_def`` with a seeded
random state (bundle root on ``sys.path`` for this step only, as ``monai.bundle run`` would have
it), save the state dict to ``models/model.pt`` (and to the path its ``CheckpointLoader`` names,
when that is another file inside the bundle), then ``BundleEngine(folder, device="cpu")`` in the
same process with the bundle root taken off ``sys.path`` again (as ``medseg segment`` runs it).
For 3D CT/MR segmentation bundles that build, one prediction on a small real crop (cut like
``tests/zoo_refs.spleen_nifti``, smaller where the bundle resamples to fine voxels); 2D
segmentation bundles get one prediction on a small real 2D image too (a ``SliceInferer`` bundle,
which medseg takes as 3D, on a 3D crop). Networks over ``--max-params`` skip the prediction.

Each bundle runs in its own subprocess under ``timeout``, so one hang cannot stop the survey; the
child writes its result after each stage, so a timeout still says how far it got. Prints a
Markdown table (bundle, version, task, result / why) and writes it to ``benchmarks/zoo_survey.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path("/work/.mirror/Project-MONAI+model-zoo/repo")
COMMIT = "dfae206df112837d817e78d3727c9f32b3b52e82"
EXPORTED = ("configs", "LICENSE", "scripts")
# As tests/zoo_refs.ZOO_SEEDS: HoVerNet's random weights at seed 0 find no nucleus.
SEEDS = {"pathology_nuclei_segmentation_classification": 3}
OUTPUT_KINDS = {"probabilities": "classification", "object": "detection", "tuples": "landmarks"}

# What a bundle does when its metadata says so; anything else is segmentation.
NOT_SEGMENTATION = (
    ("synthesis", "generative"),
    ("generat", "generative"),
    ("registration", "registration"),
    ("landmark", "landmarks"),
    ("valve insertion points", "landmarks"),
    ("classification", "classification"),
    ("detection", "detection"),
)


# --------------------------------------------------------------------------------------------
# the bundle, as published


def git(*args: str, repo: Path) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout


def bundle_names(repo: Path, commit: str) -> list[str]:
    """Bundles with an inference config and a metadata.json at ``commit``."""
    names = []
    for name in git("ls-tree", "--name-only", f"{commit}:models", repo=repo).decode().split():
        try:
            files = git("ls-tree", "--name-only", f"{commit}:models/{name}/configs", repo=repo).decode()
        except subprocess.CalledProcessError:
            continue  # a file such as model_info.json
        configs = set(files.split())
        if "metadata.json" in configs and configs & {"inference.json", "inference.yaml", "inference.yml"}:
            names.append(name)
    return names


def export(repo: Path, commit: str, name: str, dest: Path) -> Path:
    """``configs/``, ``LICENSE`` and ``scripts/`` of bundle ``name`` into ``dest/name``."""
    tree = set(git("ls-tree", "--name-only", f"{commit}:models/{name}", repo=repo).decode().split())
    paths = [f"models/{name}/{p}" for p in EXPORTED if p in tree]
    archive = git("archive", "--format=tar", commit, *paths, repo=repo)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    bundle = dest / name
    (dest / "models" / name).rename(bundle)
    return bundle


def task_of(meta: dict) -> tuple[str, str]:
    """(what the metadata calls the task, the kind of task: segmentation or another)."""
    task = str(meta.get("task", ""))
    text = f"{task} {meta.get('description', '')}".lower()
    fmt = meta.get("network_data_format") or {}
    inputs, outputs = fmt.get("inputs") or {}, fmt.get("outputs") or {}
    out_type = str(next(iter(outputs.values()), {}).get("type", "")).lower()
    if "latent" in inputs or not outputs:
        return task, "generative"
    if out_type in OUTPUT_KINDS:
        return task, OUTPUT_KINDS[out_type]
    if "segment" in task.lower():  # HoVerNet's "segmentation and classification" is segmentation
        return task, "segmentation"
    return task, next((k for word, k in NOT_SEGMENTATION if word in text), "segmentation")


# --------------------------------------------------------------------------------------------
# one bundle (child process)


def config_file(bundle: Path) -> Path:
    return next(bundle / "configs" / n for n in ("inference.json", "inference.yaml", "inference.yml")
                if (bundle / "configs" / n).exists())  # fmt: skip


def one_line(err: BaseException) -> str:
    """The error and, when MONAI wrapped it, its deepest cause."""
    text = f"{type(err).__name__}: {' '.join(str(err).split())}"[:300]
    cause = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is not err:
        text += f" <- {type(cause).__name__}: {' '.join(str(cause).split())}"[:300]
    return text


def make_weights(bundle: Path, result: dict) -> None:
    """Seeded random weights from the bundle's own ``network_def``, where its loader looks for them.

    The bundle root is on ``sys.path`` meanwhile (``scripts.*``, as ``monai.bundle run`` has it),
    then taken off again with what was imported from it: the engine must find them itself."""
    sys.path.insert(0, str(bundle))
    try:
        _build_and_save(bundle, result)
    finally:
        sys.path.remove(str(bundle))
        for module in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[module]


def _build_and_save(bundle: Path, result: dict) -> None:
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file(bundle)))
    parser["bundle_root"] = str(bundle)
    parser["device"] = torch.device("cpu")
    torch.manual_seed(SEEDS.get(bundle.name, 0))
    try:
        network = parser.get_parsed_content("network_def")
    except Exception as err:
        result["network_def_error"] = one_line(err)
        return
    state = network.state_dict()
    result["params_m"] = round(sum(v.numel() for v in state.values() if v.is_floating_point()) / 1e6, 2)
    targets = [(bundle / "models" / "model.pt").resolve()]
    loader_path = checkpoint_path(parser)
    if loader_path is not None and loader_path.resolve().is_relative_to(bundle.resolve()):
        targets.append(loader_path.resolve())
    for path in dict.fromkeys(targets):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
    result["weights"] = sorted(str(p.relative_to(bundle.resolve())) for p in set(targets))


def checkpoint_path(parser) -> Path | None:
    """The path the bundle's CheckpointLoader loads (top level or in ``handlers``), if it resolves."""
    ids = [f"handlers#{i}" for i, _ in enumerate(parser.get("handlers") or [])]
    ids += [k for k in (parser.get() or {}) if "checkpoint" in k.lower()]
    for id_ in ids:
        item = parser.get(id_)
        if isinstance(item, dict) and str(item.get("_target_", "")).endswith("CheckpointLoader"):
            try:
                return Path(str(parser.get_parsed_content(f"{id_}#load_path")))
            except Exception:
                return None
    return None


def spacing_of(engine) -> tuple[float, ...] | None:
    """The voxel size the bundle's preprocessing resamples to (its Spacingd), if any."""
    from monai.transforms import Spacingd

    def walk(transform):
        for step in getattr(transform, "transforms", [transform]):
            if isinstance(step, Spacingd):
                return tuple(float(p) for p in np.atleast_1d(step.spacing_transform.pixdim))
            found = walk(step) if hasattr(step, "transforms") else None
            if found:
                return found
        return None

    return walk(engine.parts.preprocessing)


def crop_size(default: tuple[int, ...], source: float, target: tuple[float, ...] | None) -> tuple[int, ...]:
    """About as many resampled voxels as the spleen crop gives at 1.5 mm (192x192x128), at most
    ``default`` (a bundle that resamples to fine voxels gets a smaller crop)."""
    if target is None or len(target) != len(default):
        return default
    goal = (192, 192, 128)
    sizes = (min(d, max(16, round(g * t / source))) for d, g, t in zip(default, goal, target, strict=True))
    return tuple(int(n) for n in sizes)


def nifti_crop(sample: str, offset: tuple[int, int, int], size: tuple[int, ...], path: Path) -> Path:
    import nibabel as nib

    from medseg.data import sample_path

    image = nib.load(sample_path(sample))
    slices = tuple(slice(o, o + min(s, n - o)) for o, s, n in zip(offset, size, image.shape, strict=True))
    nib.save(image.slicer[slices], path)
    return path


def case_for(engine, contract, workdir: Path, dims: int) -> tuple[list[Path], str] | None:
    """A small real ``dims``-D input with the bundle's declared channels, or None."""
    channels, modality = contract.in_channels, contract.modality.upper()
    if dims == 3:
        if modality.startswith("MR"):
            if channels == 4:
                sys.path.insert(0, str(ROOT / "tests"))
                from zoo_refs import brats_channels

                return brats_channels(workdir), "MR crop 64x64x20, 4 stand-in channels (zoo_refs)"
            size = crop_size((64, 64, 20), 3.0, spacing_of(engine))
            path = nifti_crop("example_mr_sm.nii.gz", (25, 12, 0), size, workdir / "mr.nii.gz")
            label = "MR crop {}x{}x{} (3 mm)".format(*size)
        else:
            size = crop_size((96, 96, 64), 3.0, spacing_of(engine))
            path = nifti_crop("example_ct.nii.gz", (5, 2, 48), size, workdir / "ct.nii.gz")
            label = "CT crop {}x{}x{} (3 mm)".format(*size)
        extra = f", the same file x{channels} as channels" if channels > 1 else ""
        return [path] * channels, label + extra
    if channels == 3:
        sys.path.insert(0, str(ROOT / "tests"))
        from zoo_refs import hovernet_png

        return [hovernet_png(workdir)], "RGB PNG 300x260 (zoo_refs.hovernet_png)"
    if channels == 1:
        import tifffile
        from PIL import Image

        from medseg.data import sample_path

        gray = tifffile.imread(sample_path("img2d.tif", "nuclei_2d"))[128:384, 128:384].astype(np.float32)
        gray = (255 * (gray - gray.min()) / max(float(np.ptp(gray)), 1.0)).astype(np.uint8)
        Image.fromarray(gray).save(workdir / "gray.png")
        return [workdir / "gray.png"], "gray PNG 256x256 (nuclei_2d crop)"
    return None


def describe(prediction, case, contract) -> dict:
    """What came out, and whether it fits the input grid and the declared outputs."""
    out = {"kind": prediction.kind}
    array = prediction.instances if prediction.kind == "instances" else prediction.labels
    if array is None and prediction.regions is not None:
        array = prediction.regions.any(0)
    if array is not None:
        out["shape_ok"] = tuple(array.shape) == tuple(case.spatial_shape)
        values = [int(v) for v in np.unique(array)]
        out["values"] = values if len(values) <= 12 else values[:6] + ["..."] + values[-3:]
        if prediction.kind == "labels":
            allowed = set(prediction.names) | {0}
            out["values_ok"] = set(values) <= allowed
    if prediction.kind == "regions":
        out["regions"] = int(prediction.regions.shape[0])
        out["shape_ok"] = tuple(prediction.regions.shape[1:]) == tuple(case.spatial_shape)
    return out


def predict(engine, images: list[Path]) -> dict:
    """One case through the engine: seconds and what came out, or the error."""
    from medseg.errors import BundleError, MedsegError

    start = time.perf_counter()
    try:
        case = engine.read(images if len(images) > 1 else images[0])
        prediction = engine.predict(engine.preprocess(case), case)
    except BundleError as err:
        return {"predict_error": " ".join(str(err).split())}
    except MedsegError as err:
        return {"predict_error": f"{type(err).__name__}: {' '.join(str(err).split())}"}
    except Exception as err:  # the engine promises a MedsegError: anything else is a bug to report
        return {"predict_bug": one_line(err), "traceback": traceback.format_exc()[-3000:]}
    seconds = round(time.perf_counter() - start, 2)
    return {"predict_s": seconds, "output": describe(prediction, case, engine.contract)}


def build_engine(bundle: Path, result: dict):
    """``BundleEngine(bundle, device="cpu")``, or None with the error in ``result``."""
    from medseg.bundle.engine import BundleEngine
    from medseg.errors import MedsegError

    start = time.perf_counter()
    try:
        engine = BundleEngine(bundle, device="cpu")
    except MedsegError as err:
        result["engine_error"] = " ".join(str(err).split())
        result["engine_error_lines"] = len(str(err).strip().splitlines())
        return None
    except Exception as err:  # the engine promises a BundleError: anything else is a bug to report
        result["engine_bug"] = one_line(err)
        result["traceback"] = traceback.format_exc()[-3000:]
        return None
    result["engine_s"] = round(time.perf_counter() - start, 2)
    contract = engine.contract
    result["dims"], result["in_channels"] = contract.spatial_dims, contract.in_channels
    return engine


def survey_one(name: str, repo: Path, commit: str, result_path: Path, max_params: float) -> None:
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    result: dict = {"name": name}
    with tempfile.TemporaryDirectory(prefix="zoo_survey_") as tmp:

        def save(stage: str) -> None:  # after each stage, so a timeout still says how far it got
            result["stage"] = stage
            result_path.write_text(json.dumps(result, default=str).replace(tmp, "<tmp>"))

        bundle = export(repo, commit, name, Path(tmp) / "bundles")
        meta = json.loads((bundle / "configs" / "metadata.json").read_text())
        result["version"] = str(meta.get("version", "?"))
        result["task"], result["kind"] = task_of(meta)
        save("network_def")
        make_weights(bundle, result)
        save("engine")
        engine = build_engine(bundle, result)
        if engine is None or result["kind"] != "segmentation":
            return save("done")
        if (result.get("params_m") or 0) > max_params:
            result["predict_skipped"] = f"{result['params_m']:.0f} M parameters"
            return save("done")
        workdir = Path(tmp) / "input"
        workdir.mkdir()
        made = case_for(engine, engine.contract, workdir, engine.contract.spatial_dims)
        if made is None:
            result["predict_skipped"] = f"no sample input with {engine.contract.in_channels} channels in 2D"
            return save("done")
        images, result["input"] = made
        save("predict")
        result.update(predict(engine, images))
        save("done")


# --------------------------------------------------------------------------------------------
# the survey (parent process)


def run_child(name: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        command = [
            "timeout", "--kill-after=10", str(args.timeout), sys.executable, __file__, "--one", name,
            "--zoo", str(args.zoo), "--commit", args.commit, "--result", str(result_path),
            "--max-params", str(args.max_params),
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        result = json.loads(result_path.read_text()) if result_path.exists() else {"name": name}
    result["wall_s"] = round(seconds, 1)
    if proc.returncode in (124, 137):
        result["timeout"] = f"timed out after {args.timeout} s in stage '{result.get('stage', 'start')}'"
    elif result.get("stage") != "done":
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        result["crash"] = f"child exited {proc.returncode}: {lines[-1] if lines else '?'}"[:400]
    return result


def verdict(r: dict) -> str:
    """The table's last column."""
    if "timeout" in r and r.get("stage", "").startswith("predict"):
        built = f"engine builds in {r['engine_s']:.1f} s"
        return f"runs: {built}; prediction {r['timeout']} ({r.get('input', '')})"
    if "timeout" in r:
        return f"fails: {r['timeout']}"
    if "crash" in r:
        return f"fails: {r['crash']}"
    if "engine_bug" in r:
        return f"fails (**not a BundleError**, engine bug?): `{r['engine_bug']}`"
    built = "engine_error" not in r
    engine = f"engine builds ({r['engine_s']:.1f} s)" if built else f"engine: `{r['engine_error']}`"
    if r["kind"] != "segmentation":
        return f"not segmentation ({r['kind']}); {engine}"
    if not built:
        why = r.get("network_def_error")
        alone = (
            f" (network_def alone: {why})" if why and "cannot build 'network" not in r["engine_error"] else ""
        )
        return f"fails: `{r['engine_error']}`{alone}"
    if "predict_skipped" in r:
        return f"runs: {engine}; prediction skipped ({r['predict_skipped']})"
    if "predict_bug" in r:
        return f"fails: {engine}, prediction raises a non-medseg error: `{r['predict_bug']}` ({r['input']})"
    if "predict_error" in r:
        return f"fails: {engine}, prediction: `{r['predict_error']}` ({r['input']})"
    out = r["output"]
    checks = []
    if out.get("shape_ok") is False:
        checks.append("**output not on the input grid**")
    if out.get("values_ok") is False:
        checks.append("**label values outside channel_def**")
    values = ",".join(str(v) for v in out.get("values", []))
    what = f"{out['kind']}" + (f" {out['regions']} regions" if "regions" in out else "") + f" values {values}"
    return f"runs: {engine}; prediction {r['predict_s']:.1f} s on {r['input']} -> {what}" + (
        f"; {'; '.join(checks)}" if checks else ""
    )


def medseg_state() -> str:
    """The medseg commit the survey ran on, and whether medseg/ had uncommitted changes."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "medseg"], capture_output=True, text=True
    )
    commit = head.stdout.strip() or "?"
    return f"medseg `{commit}`" + (" with uncommitted changes in medseg/" if dirty.stdout.strip() else "")


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(results: list[dict], args: argparse.Namespace) -> str:
    import monai
    import torch

    head = [
        "# Model-zoo bundles through medseg's BundleEngine\n",
        f"`benchmarks/zoo_survey.py`, Project-MONAI/model-zoo at `{args.commit}`, MONAI {monai.__version__}, "
        f"torch {torch.__version__}, {medseg_state()}, CPU ({os.cpu_count()} cores), "
        f"{time.strftime('%Y-%m-%d')}. "
        f"Random seeded weights from each bundle's own `network_def`; `configs/`, `LICENSE` and `scripts/` "
        f"exported (no `large_files.yml` downloads); {args.timeout} s per bundle; predictions skipped over "
        f"{args.max_params:g} M parameters. Seconds: engine = `BundleEngine(...)` (parse + weights), "
        f"prediction = read + preprocess + network + postprocess of one case.\n",
        "| bundle | version | task | result / why |",
        "| --- | --- | --- | --- |",
    ]
    rows = []
    for r in results:
        task = r.get("task", "?")
        kind = r.get("kind", "?")
        rows.append(f"| {r['name']} | {r.get('version', '?')} | {cell(task)} ({kind}) | {cell(verdict(r))} |")
    counts = {}
    for r in results:
        key = verdict(r).split(":")[0].split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    return "\n".join(head + rows) + f"\n\n{len(results)} bundles: {summary}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=MIRROR, help="model-zoo git repository (bare is fine)")
    parser.add_argument("--commit", default=COMMIT)
    parser.add_argument("--only", nargs="*", help="these bundles only")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per bundle")
    parser.add_argument("--max-params", type=float, default=250.0, help="skip predictions above (millions)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "zoo_survey.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write every result (with tracebacks) here")
    args = parser.parse_args()
    if args.one:
        survey_one(args.one, args.zoo, args.commit, args.result, args.max_params)
        return
    names = args.only or bundle_names(args.zoo, args.commit)
    results = []
    for name in names:
        result = run_child(name, args)
        results.append(result)
        print(f"{name}: {verdict(result)} [{result['wall_s']} s]", file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
    text = table(results, args)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
