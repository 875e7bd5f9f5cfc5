"""Does the abdomen CT bundle's data path keep up with its training step? Loading rate vs step
rate, in one run, on the bundle as shipped (sample CT case A, 3 mm, CacheDataset, 4 patches of
96x96x16 per item, the full augmentation chain).

    python benchmarks/training_data.py            # --batches 40

1. loading alone: batches per second out of the shipped loader (DataLoader, 2 worker processes),
   of the same in the main process (0 workers), and of MONAI's ThreadDataLoader (a prefetching
   thread);
2. the step alone: forward, DiceCE, backward and AdamW on one fixed batch under the bundle's bf16
   autocast (what the trainer does per iteration, without data);
3. the bundle's own trainer (train#trainer, monai.bundle's objects, shipped loader) for the same
   number of iterations: its iterations per second against the step alone show how much time
   goes to waiting for data. On 2 cores the loader's workers and the step share the CPUs, so part
   of the gap is contention rather than starvation.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.data import DataLoader, ThreadDataLoader

from medseg.bundle.locate import shipped_bundles_dir
from medseg.training import SeededBatchSampler, SeededDataset

BUNDLE = shipped_bundles_dir() / "abdomen_ct_segmentation"


def parser(**overrides) -> ConfigParser:
    p = ConfigParser()
    p.read_config(str(BUNDLE / "configs" / "train.json"))
    p.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    p.update({"bundle_root": str(BUNDLE), "device": "$torch.device('cpu')", **overrides})
    return p


def loader_rate(make_loader, dataset, batches: int) -> float:
    loader = make_loader(SeededDataset(dataset), SeededBatchSampler(dataset, batch_size=1, seed=0))
    iterator = iter(loader)
    next(iterator)  # start-up (worker processes) not counted
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start)


def step_rate(p: ConfigParser, batch: dict, steps: int) -> float:
    network, loss, optimizer, inferer = (
        p.get_parsed_content(k) for k in ("network", "loss", "optimizer", "train#inferer")
    )
    images, labels = batch["image"], batch["label"]
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss(inferer(images, network), labels).backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def trainer_rate(iterations: int) -> float:
    # validation and interval checkpoints off: only the training loop is timed; what the trainer
    # writes at the end (model.pt, report) goes to a temporary folder, never the shipped bundle
    out = tempfile.mkdtemp(prefix="medseg-bench-")
    p = parser(max_epochs=1, epoch_length=iterations + 3, val_interval=10**6, checkpoint_interval=10**6,
               ckpt_dir=f"{out}/models", log_dir=f"{out}/logs")  # fmt: skip
    trainer = p.get_parsed_content("train#trainer")
    times = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: times.append(time.perf_counter()))
    trainer.run()
    shutil.rmtree(out, ignore_errors=True)
    return iterations / (times[-1] - times[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    args = ap.parse_args()
    p = parser()
    dataset = p.get_parsed_content("train#dataset")  # caches the deterministic part, as training does
    workers = p.get_parsed_content("num_workers")
    loaders = {
        f"DataLoader, {workers} workers (shipped)": lambda d, s: DataLoader(
            d, batch_sampler=s, num_workers=workers
        ),
        "DataLoader, 0 workers": lambda d, s: DataLoader(d, batch_sampler=s, num_workers=0),
        "ThreadDataLoader (prefetch thread)": lambda d, s: ThreadDataLoader(
            d, batch_sampler=s, num_workers=0
        ),
    }
    rates = {name: loader_rate(make, dataset, args.batches) for name, make in loaders.items()}
    batch = next(iter(DataLoader(SeededDataset(dataset), batch_sampler=SeededBatchSampler(dataset))))
    steps = step_rate(p, batch, max(10, args.batches // 4))
    trained = trainer_rate(args.batches)
    patches = p.get_parsed_content("num_samples")
    size = p.get_parsed_content("patch_size")
    print(f"one batch = {patches} patches of {size}; torch {torch.get_num_threads()} threads")
    print(f"{'':<46}{'batches/s':>10}{'vs step rate':>14}")
    for name, rate in rates.items():
        print(f"{'loading: ' + name:<46}{rate:>10.2f}{rate / steps:>13.2f}x")
    print(f"{'training step alone (bf16)':<46}{steps:>10.2f}{1:>13.2f}x")
    print(f"{'the bundle trainer (data + step)':<46}{trained:>10.2f}{trained / steps:>13.2f}x")


if __name__ == "__main__":
    main()
