"""GPU training check and benchmark, prepared for the lent GPU machine (run it as one short job).

    python benchmarks/gpu_training.py --out $OUT          # about 3 minutes on one GPU

1. With two or more CUDA devices: `medseg train abdomen_ct_segmentation --nproc-per-node 2` (nccl)
   for 6 iterations, its exit code and time (the weights' agreement between ranks is what the CPU
   test checks with gloo); with one device this part is skipped and said so.
2. One epoch (50 iterations) of the abdomen CT bundle as shipped (CacheDataset, 2 loader workers,
   batch of 4 patches of 96x96x16) on one GPU, in three precisions: fp32, bf16 autocast (the
   bundle's AutocastInferer, as shipped) and MONAI's fp16 AMP with a gradient scaler; for each:
   median step time, samples per second, peak GPU memory (torch.cuda.max_memory_allocated) and
   GPU utilisation (nvidia-smi sampled every 200 ms).
Writes ``gpu_training.json`` under --out and prints a table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser

from medseg.bundle.locate import shipped_bundles_dir

BUNDLE = shipped_bundles_dir() / "abdomen_ct_segmentation"


def utilisation_sampler(samples: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            samples.append(float(out.stdout.strip().splitlines()[0]))
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            pass
        stop.wait(0.2)


def one_epoch(precision: str, iterations: int) -> dict:
    out = tempfile.mkdtemp(prefix="medseg-gpu-")
    p = ConfigParser()
    p.read_config(str(BUNDLE / "configs" / "train.json"))
    p.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    p.update({
        "bundle_root": str(BUNDLE), "ckpt_dir": f"{out}/models", "log_dir": f"{out}/logs",
        "max_epochs": 1, "epoch_length": iterations, "val_interval": 10**6, "checkpoint_interval": 10**6,
        "train#inferer#enabled": precision == "bf16", "train#trainer#amp": precision == "fp16-amp",
    })  # fmt: skip
    trainer = p.get_parsed_content("train#trainer")
    stamps: list[float] = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: (torch.cuda.synchronize(), stamps.append(time.perf_counter()))
    )
    torch.cuda.reset_peak_memory_stats()
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=utilisation_sampler, args=(samples, stop), daemon=True)
    sampler.start()
    trainer.run()
    stop.set()
    steps = [b - a for a, b in zip(stamps[5:], stamps[6:], strict=False)]  # after 5 warm-up steps
    batch = p.get_parsed_content("num_samples")
    median = statistics.median(steps)
    return {
        "precision": precision,
        "step_s": round(median, 4),
        "samples_per_s": round(batch / median, 1),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "gpu_utilisation_pct": round(statistics.mean(samples), 1) if samples else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".")
    ap.add_argument("--iterations", type=int, default=50)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark is for the GPU machine")
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "devices": torch.cuda.device_count(),
    }
    if torch.cuda.device_count() >= 2:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            proc = subprocess.run(
                ["medseg", "train", "abdomen_ct_segmentation", "--nproc-per-node", "2", "--out", f"{tmp}/run",
                 "max_epochs=1", "epoch_length=6", "val_interval=5"], capture_output=True, text=True,
            )  # fmt: skip
            result["ddp_nccl_2_gpus"] = {
                "returncode": proc.returncode,
                "seconds": round(time.perf_counter() - start, 1),
            }
    else:
        result["ddp_nccl_2_gpus"] = "skipped: one CUDA device"
    result["epochs"] = [one_epoch(p, args.iterations) for p in ("fp32", "bf16", "fp16-amp")]
    Path(args.out, "gpu_training.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
