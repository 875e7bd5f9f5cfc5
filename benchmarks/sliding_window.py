"""Sliding-window inference: medseg's predictor vs MONAI's sliding_window_inference and nnU-Net v2's.

    python benchmarks/sliding_window.py                      # speed: tiled CT 512x512x256 + 1.5 mm CT
    python benchmarks/sliding_window.py --cases aorta --mirror
    python benchmarks/sliding_window.py --memory             # 14 classes on 512x512x512

Same network and weights everywhere: the abdomen bundle's UNet (4.8 M parameters, 8 classes,
window 128x128x16, the shipped model.pt), overlap / step 0.5, 4 windows per forward where the
method batches, 2 threads. Inputs (HU window of the bundle, scaled to 0..1):
- ``tiled``: the shipped 3 mm CT (case A, 122x101x112) mirrored into 512x512x256, so the network
  sees real anatomy at its own spacing;
- ``aorta``: TotalSegmentator's 1.5 mm chest CT (233x167x191), as it is.
Each method runs in its own process (peak resident memory = that process's ``ru_maxrss``; the
memory before the call, with torch, network and input loaded, is reported too) and saves its
label map; the parent compares them with MONAI's: identical voxels, and Dice per label. What the
call itself allocates is ``call GB``: the peak resident memory during the call (Linux's VmHWM,
reset at the call's start through /proc/self/clear_refs) less the resident memory at its start;
``ru_maxrss`` cannot show it, being a high-water mark of the whole process.
Methods: ``monai`` (model-zoo defaults: Gaussian, fp32, ``no_grad``, then argmax), ``medseg``
(fp32, label output, two worker threads of one torch thread each), ``medseg-serial`` (the same
in one thread of two torch threads; not run by default), ``medseg-bf16`` (autocast bf16), ``nnunet`` (its
``predict_sliding_window_return_logits``, fp32 on CPU, then argmax; needs nnunetv2, see
nnunet_baseline.py); with ``--mirror`` also ``medseg-mirror`` and ``nnunet-mirror`` (all 3 axes).
``--memory``: a 14-class UNet of the same shape (seeded weights) on 512x512x512, medseg (label
output) and MONAI, peak memory only matters; target under 6 GB for medseg.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROI = (128, 128, 16)
SPEED_METHODS = ["monai", "medseg", "medseg-bf16", "nnunet"]
MIRROR_METHODS = ["medseg-mirror", "nnunet-mirror"]


def network(classes: int = 8):
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=classes,
        channels=(16, 32, 64, 128),
        strides=(2, 2, 2),
        num_res_units=2,
        norm="instance",
    )
    if classes == 8:
        weights = ROOT / "bundles" / "abdomen_ct_segmentation" / "models" / "model.pt"
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


def scaled(array: np.ndarray) -> np.ndarray:
    """The bundle's intensity window: HU -175..250 to 0..1."""
    return np.clip((array.astype(np.float32) + 175) / 425, 0, 1)


def make_input(case: str, path: Path) -> None:
    from medseg.data import sample_path
    from medseg.io import read_image

    if case == "aorta":
        array, _ = read_image(sample_path("aorta_report/example_ct.nii.gz"))
    else:
        ct, _ = read_image(sample_path("example_ct.nii.gz"))
        size = (512, 512, 512) if case == "tiled512" else (512, 512, 256)
        reps = [int(np.ceil(s / c)) + 1 for s, c in zip(size, ct.shape, strict=True)]
        array = np.pad(ct, [(0, r * c - c) for r, c in zip(reps, ct.shape, strict=True)], mode="symmetric")
        array = array[: size[0], : size[1], : size[2]]
    np.save(path, scaled(array))


def resident_gb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in GB, from /proc/self/status (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return tuple(int(fields[k].split()[0]) / 2**20 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


def reset_peak() -> None:
    """Reset VmHWM to the current resident memory (Linux >= 4.0), so it is the peak from now on."""
    Path("/proc/self/clear_refs").write_text("5")


def run_method(method: str, image_path: Path, label_path: Path, classes: int) -> dict:
    """In a child process: predict once, save the label map, report seconds and memory."""
    import torch

    torch.set_num_threads(2)
    net = network(classes)
    image = torch.from_numpy(np.load(image_path))[None, None]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    reset_peak()
    resident = resident_gb()[0]
    start = time.perf_counter()
    if method == "monai":
        from monai.inferers import sliding_window_inference

        with torch.no_grad():
            logits = sliding_window_inference(image, ROI, 4, net, overlap=0.5, mode="gaussian")
        label = logits.argmax(1)[0].to(torch.uint8)
    elif method.startswith("medseg"):
        from medseg.inference import sliding_window_predict

        label = sliding_window_predict(
            image,
            net,
            ROI,
            4,
            overlap=0.5,
            amp=method == "medseg-bf16",
            mirror_axes=(0, 1, 2) if method == "medseg-mirror" else (),
            output="label",
            workers=1 if method == "medseg-serial" else None,
        )[0, 0]
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from nnunet_baseline import nnunet_sliding_window

        mirror = (0, 1, 2) if method == "nnunet-mirror" else None
        logits = nnunet_sliding_window(net, image[0], ROI, step=0.5, mirror_axes=mirror)
        label = logits.argmax(0).to(torch.uint8)
    seconds = time.perf_counter() - start
    call = resident_gb()[1] - resident
    np.save(label_path, label.numpy())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"method": method, "seconds": seconds, "peak_gb": peak, "before_gb": before, "call_gb": call}


def child(method: str, image: Path, label: Path, classes: int) -> dict:
    command = [sys.executable, __file__, "--child", method, str(image), str(label), str(classes)]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if proc.returncode:
        return {"method": method, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dice_per_label(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    scores = {}
    for value in np.union1d(np.unique(a), np.unique(b)):
        if value == 0:
            continue
        x, y = a == value, b == value
        scores[int(value)] = 2 * np.sum(x & y) / (np.sum(x) + np.sum(y))
    return scores


def compare(reference: np.ndarray, label: np.ndarray) -> str:
    """Identical voxels, and the worst label's Dice with its voxel counts (a label the network
    barely predicts, as abdominal organs on a chest CT, can have a low Dice over a few voxels)."""
    same = np.mean(reference == label)
    dice = dice_per_label(reference, label)
    if not dice:
        return f"identical voxels {100 * same:.4f}%"
    worst = min(dice, key=dice.get)
    counts = f"label {worst}: {np.sum(reference == worst)} vs {np.sum(label == worst)} voxels"
    return f"identical voxels {100 * same:.4f}%, min Dice per label {dice[worst]:.4f} ({counts})"


def run_case(case: str, methods: list[str], repeat: int, tmp: Path, classes: int = 8) -> None:
    image = tmp / f"{case}.npy"
    make_input(case, image)
    shape = np.load(image, mmap_mode="r").shape
    print(f"\n== {case}: {shape[0]}x{shape[1]}x{shape[2]}, {classes} classes, window {ROI}", flush=True)
    best: dict[str, dict] = {}
    for _ in range(repeat):  # interleaved rounds, best time of each method
        for method in methods:
            result = child(method, image, tmp / f"{case}-{method}.npy", classes)
            print(f"   {method:<14} {json.dumps(result)}", flush=True)
            if "error" in result:
                continue
            if method not in best or result["seconds"] < best[method]["seconds"]:
                best[method] = result
    base = best.get("monai") or next(iter(best.values()))
    reference = np.load(tmp / f"{case}-{base['method']}.npy")
    name = base["method"]
    header = f"{'method':<15}{'seconds':>9}{'vs ' + name:>12}{'peak GB':>9}{'before':>8}{'call GB':>9}"
    print(f"{header}  output vs {name}")
    for method, r in best.items():
        ratio = base["seconds"] / r["seconds"]
        label = np.load(tmp / f"{case}-{method}.npy")
        print(
            f"{method:<15}{r['seconds']:>9.1f}{ratio:>11.2f}x{r['peak_gb']:>9.2f}{r['before_gb']:>8.2f}"
            f"{r['call_gb']:>9.2f}  "
            f"{compare(reference, label)}"
        )
    for a, b in (("nnunet", "medseg"), ("nnunet-mirror", "medseg-mirror")):
        if a in best and b in best:
            ratio = best[a]["seconds"] / best[b]["seconds"]
            labels = np.load(tmp / f"{case}-{a}.npy"), np.load(tmp / f"{case}-{b}.npy")
            print(f"{b} vs {a}: {ratio:.2f}x faster; {compare(*labels)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["tiled", "aorta"], choices=["tiled", "aorta"])
    parser.add_argument("--methods", nargs="+", default=SPEED_METHODS)
    parser.add_argument("--mirror", action="store_true", help="also time mirroring TTA (8 passes)")
    parser.add_argument("--memory", action="store_true", help="14 classes on 512x512x512 (medseg, monai)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, image, label, classes = args.child
        print(json.dumps(run_method(method, Path(image), Path(label), int(classes))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.memory:
            methods = [m for m in ("medseg", "monai") if m in args.methods]
            run_case("tiled512", methods, 1, Path(tmp), classes=14)
            return
        for case in args.cases:
            run_case(case, args.methods + (MIRROR_METHODS if args.mirror else []), args.repeat, Path(tmp))


if __name__ == "__main__":
    main()
