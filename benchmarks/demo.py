"""The demo's figures: the whole ``medseg demo`` command, the ``segment`` call inside it, peak memory.

    .venv/bin/python benchmarks/demo.py              # best of 3 runs, CPU

Each run is one fresh ``medseg demo --device cpu --quiet`` process writing into a new folder,
as a user runs it once installed. Printed per run and as the best run:
- ``command s``: wall time of the whole process (interpreter start, imports, reading the DICOM
  series, bundle parse and weights, inference, writing every output, Dice against the reference);
- ``segment s``: what the demo itself prints ("Segmented the sample DICOM series in ... s"),
  the ``medseg.workflows.segment`` call: reading, bundle load, inference and writing; not
  inference alone;
- ``peak GB``: the process's peak resident memory (``ru_maxrss`` of the child, a high-water mark,
  which is what a peak is).
Run it on a quiet machine: on 2 shared cores, other jobs move the times by several-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(out: Path) -> dict:
    """One fresh demo process: its wall time, the seconds it reports, its own peak memory."""
    command = [sys.executable, "-m", "medseg.cli.main", "demo", "--device", "cpu", "--quiet"]
    command += ["--out", str(out)]
    with tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not a running max
        seconds = time.perf_counter() - start
        if status:
            stderr.seek(0)
            raise SystemExit(f"medseg demo failed: {stderr.read().strip().splitlines()[-1:]}")
    summary = json.loads((out / "summary.json").read_text())
    peak = usage.ru_maxrss / 2**20  # KiB on Linux
    return {"command_s": round(seconds, 2), "segment_s": summary["seconds"], "peak_gb": round(peak, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            runs.append(one_run(Path(tmp) / f"run{i}"))
            print(json.dumps(runs[-1]), flush=True)
    best = min(runs, key=lambda r: r["command_s"])
    load = os.getloadavg()[0]
    print(
        f"best of {len(runs)}: command {best['command_s']:.1f} s, segment call {best['segment_s']:.1f} s, "
        f"peak {max(r['peak_gb'] for r in runs):.2f} GB (load average {load:.1f}, {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
