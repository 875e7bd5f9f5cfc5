"""RoIAlign: time and memory of medseg's 3D/2D roi_align (grid_sample-based, plain torch).

    python benchmarks/roi_align.py                   # CPU, 2 threads: 3D and 2D cases below
    python benchmarks/roi_align.py --device cuda     # the GPU machine (also times torchvision's 2D op)
    python benchmarks/roi_align.py --small           # a smoke run with small sizes
    python benchmarks/roi_align.py --backward        # forward + backward (training), not only forward

Cases (N = 1, float32, sampling_ratio 2, aligned, spatial_scale 0.25; random boxes 8-128 image units
inside the image):
- ``3d``: 512 RoIs of 14^3 bins on a 64^3 map of 256 channels (output 1.44 GB);
- ``2d``: torchvision's Mask R-CNN mask head: 512 RoIs of 14x14 on 256x200x272 (an 800x1088 image).
Each case runs in its own process: one warm-up call, then the median of ``--repeat`` calls. Memory
as in sliding_window.py: on CPU, ``call GB`` is the peak resident memory during one call (Linux's
VmHWM, reset at the call's start through /proc/self/clear_refs) less the resident memory at its
start, so it includes the output; on CUDA, ``torch.cuda.max_memory_allocated`` less the allocated
memory at the call's start. ``output GB`` is the size of the result itself.

Measured 2026-11-30 on the 2-core development VM (torch 2.13 CPU, 2 threads), which runs 2 cores
in bursts and about 1 core sustained (CPU time per call = wall time after a few seconds):
3d forward 1.6-1.7 s while bursting, 4.3-5.5 s sustained, call 1.63 GB (output 1.34 GB);
2d forward 0.44 s, call 0.19 GB; with --backward 3d 120-133 s (embedding_bag's CPU backward),
2d 2.0-7.0 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {  # name: (feature shape (C, *spatial), RoIs, output size)
    "3d": ((256, 64, 64, 64), 512, (14, 14, 14)),
    "2d": ((256, 200, 272), 512, (14, 14)),
}
SMALL = {"3d": ((32, 24, 24, 24), 64, (7, 7, 7)), "2d": ((32, 50, 68), 64, (7, 7))}
SCALE = 0.25


def resident_gb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in GB, from /proc/self/status (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return tuple(int(fields[k].split()[0]) / 2**20 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


def reset_peak() -> None:
    """Reset VmHWM to the current resident memory (Linux >= 4.0), so it is the peak from now on."""
    Path("/proc/self/clear_refs").write_text("5")


def make_input(shape, count: int, device: str, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(1, *shape, generator=generator).to(device)
    image = torch.tensor(shape[1:], dtype=torch.float32) / SCALE
    size = 8 + 120 * torch.rand(count, len(image), generator=generator)
    low = torch.rand(count, len(image), generator=generator) * (image - size).clamp(min=0)
    rois = torch.cat([torch.zeros(count, 1), low, low + size], dim=1).to(device)
    return features, rois


def call(method: str, features, rois, output_size, backward: bool):
    import torch

    if method == "torchvision":  # its x indexes the last axis: see medseg.networks.roi_align
        import torchvision

        def run(f):
            out = torchvision.ops.roi_align(f.transpose(-1, -2), rois, output_size[::-1], SCALE, 2, True)
            return out.transpose(-1, -2)
    else:
        from medseg.networks.roi_align import roi_align

        def run(f):
            return roi_align(f, rois, output_size, SCALE, 2)

    if backward:
        features = features.detach().requires_grad_()
        out = run(features)
        out.sum().backward()
        return out.detach()
    with torch.no_grad():
        return run(features)


def measure(method: str, case: str, device: str, small: bool, repeat: int, backward: bool) -> dict:
    """In a child process: warm-up, ``repeat`` timed calls, then one call for its memory."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    shape, count, output_size = (SMALL if small else CASES)[case]
    features, rois = make_input(shape, count, device)
    cuda = device == "cuda"

    def timed() -> float:
        start = time.perf_counter()
        out = call(method, features, rois, output_size, backward)
        if cuda:
            torch.cuda.synchronize()
        del out
        return time.perf_counter() - start

    timed()
    seconds = [timed() for _ in range(repeat)]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = call(method, features, rois, output_size, backward)
        torch.cuda.synchronize()
        call_gb = (torch.cuda.max_memory_allocated() - before) / 2**30
    else:
        reset_peak()
        resident = resident_gb()[0]
        out = call(method, features, rois, output_size, backward)
        call_gb = resident_gb()[1] - resident
    return {
        "method": method,
        "case": case,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "all_s": [round(s, 3) for s in seconds],
        "call_gb": call_gb,
        "output_gb": out.numel() * out.element_size() / 2**30,
        "shape": f"{count} RoIs of {'x'.join(map(str, output_size))} on {'x'.join(map(str, shape))}",
    }


def child(*args: str) -> dict:
    command = [sys.executable, __file__, "--child", *args]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode:
        return {"method": args[0], "case": args[1], "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, case, device, small, repeat, backward = args.child
        print(json.dumps(measure(method, case, device, small == "1", int(repeat), backward == "1")))
        return
    print(f"device {args.device}, {os.environ.get('OMP_NUM_THREADS', '2')} threads, load {os.getloadavg()}")
    print(f"{'case':<5}{'method':<13}{'median s':>10}{'min s':>8}{'call GB':>9}{'output GB':>11}  shape")
    for case in args.cases:
        methods = ["medseg"] + (["torchvision"] if case == "2d" and args.device == "cuda" else [])
        for method in methods:
            flags = (args.device, str(int(args.small)), str(args.repeat), str(int(args.backward)))
            r = child(method, case, *flags)
            if "error" in r:
                print(f"{case:<5}{method:<13}  error: {r['error']}")
                continue
            print(
                f"{case:<5}{method:<13}{r['median_s']:>10.3f}{r['min_s']:>8.3f}{r['call_gb']:>9.2f}"
                f"{r['output_gb']:>11.2f}  {r['shape']}; runs {r['all_s']}"
            )


if __name__ == "__main__":
    main()
