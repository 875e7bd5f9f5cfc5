"""CPU training step of the abdomen CT bundle's network: fp32 vs bf16 autocast, with and without
channels-last memory format, in one run.

    python benchmarks/training_step.py            # --steps 10 --warmup 3

The network, loss, optimizer and batch are the bundle's as shipped (train.json: UNet 16-128 with
instance norm, DiceCE, AdamW; batch of num_samples=4 patches of 96x96x16). Each variant runs
``warmup`` steps, then ``steps`` timed steps (forward, loss, backward, optimizer step); the median
is reported with its ratio to fp32. bf16 is what the bundle trains with (train#inferer is
medseg.inference.AutocastInferer).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.bundle import ConfigParser

from medseg.bundle.locate import shipped_bundles_dir


def step_times(bf16: bool, channels_last: bool, steps: int, warmup: int) -> list[float]:
    parser = ConfigParser()
    parser.read_config(str(shipped_bundles_dir() / "abdomen_ct_segmentation" / "configs" / "train.json"))
    parser["device"] = "$torch.device('cpu')"
    torch.manual_seed(0)
    network, loss, optimizer = (parser.get_parsed_content(k) for k in ("network", "loss", "optimizer"))
    batch = parser.get_parsed_content("num_samples")
    size = parser.get_parsed_content("patch_size")
    images = torch.rand(batch, 1, *size)
    labels = torch.randint(0, parser.get_parsed_content("num_classes"), (batch, 1, *size))
    if channels_last:
        network = network.to(memory_format=torch.channels_last_3d)
        images = images.contiguous(memory_format=torch.channels_last_3d)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = network(images)
        value = loss(out.float(), labels)
        value.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for bf16 in (False, True):
        for channels_last in (False, True):
            median = statistics.median(step_times(bf16, channels_last, args.steps, args.warmup))
            rows.append(
                (
                    ("bf16 autocast" if bf16 else "fp32") + (" + channels-last" if channels_last else ""),
                    median,
                )
            )
    base = rows[0][1]
    print(f"{'variant':<28}{'step (s)':>10}{'speed-up vs fp32':>18}")
    for name, median in rows:
        print(f"{name:<28}{median:>10.3f}{base / median:>17.2f}x")


if __name__ == "__main__":
    main()
