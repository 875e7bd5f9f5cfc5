"""``medseg train`` end to end on the abdomen CT bundle: run folders, export, exact resume after a
SIGKILL, and a real 2-process torchrun (gloo) against one process with the same global batch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medseg.bundle.locate import shipped_bundles_dir

pytestmark = pytest.mark.slow
BUNDLE = "abdomen_ct_segmentation"
# Small steps (2 patches of 64x64x16 instead of 4 of 96x96x16): the runs test bookkeeping, not learning.
SMALL = ["num_samples=2", "patch_size=[64,64,16]"]
SHORT = ["max_epochs=2", "epoch_length=4", "checkpoint_interval=2", "val_interval=1", *SMALL]
HERE = Path(__file__).resolve().parent


def medseg(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *args], capture_output=True, text=True, cwd=cwd,
        timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def tree_digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, dict]:
    """An uninterrupted run in the default run folder (runs/<bundle>/<time>/ under the current
    directory), with the shipped bundle's files digested before and after."""
    cwd = tmp_path_factory.mktemp("train")
    shipped = shipped_bundles_dir() / BUNDLE
    before = tree_digest(shipped)
    proc = medseg("train", BUNDLE, *SHORT, "num_workers=0", cwd=cwd, env={**os.environ, "MEDSEG_MLFLOW": "1"})
    assert tree_digest(shipped) == before  # not a byte or a timestamp of the bundle changed
    (run,) = (cwd / "runs" / BUNDLE).iterdir()
    assert f"run folder: runs/{BUNDLE}/{run.name}\n" in proc.stdout
    return cwd, run, json.loads((run / "config_ran.json").read_text())


def test_run_folder_holds_configs_weights_checkpoints_logs(finished):
    _, run, ran = finished
    assert run.name[:8].isdigit() and len(run.name) == len("20261130-071201")
    for name in (
        "configs/train.json",
        "configs/inference.json",
        "configs/multi_gpu_train.json",
        "LICENSE",
        "docs/README.md",
        "models/model.pt",
        "models/model_best.pt",
        "logs/train.log",
        "run.json",
    ):
        assert (run / name).is_file(), name
    checkpoints = sorted(p.name for p in (run / "models" / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint_it00000006.pt", "checkpoint_it00000008.pt"]  # the last 2 of 4
    last = weights(run / "models" / "checkpoints" / "checkpoint_it00000008.pt")
    assert last["trainer"]["iteration"] == 8 and last["trainer"]["max_epochs"] == 2
    assert max_difference(last["model"], weights(run / "models" / "model.pt")) == 0
    assert last["checkpointer"]["best_metric"] is not None
    assert ran["max_epochs"] == 2 and ran["checkpoint_interval"] == 2  # the overrides, as they ran
    log = (run / "logs" / "train.log").read_text()
    assert "Epoch[2] Complete" in log and "iteration 4/8 epoch 1/2 loss " in log and " it/s ETA " in log


def test_report_gives_curves_best_metric_and_wall_time(finished):
    _, run, _ = finished
    report = json.loads((run / "logs" / "report" / "report.json").read_text())
    last = weights(run / "models" / "checkpoints" / "checkpoint_it00000008.pt")
    assert report["iterations"] == 8 and report["epochs"] == 2 and report["wall_time_s"] > 0
    assert [v["epoch"] for v in report["validations"]] == [1, 2]  # val_interval=1
    best = max(report["validations"], key=lambda v: v["val_mean_dice"])
    assert report["best_metric"] == best["val_mean_dice"] == last["checkpointer"]["best_metric"]
    assert report["best_epoch"] == best["epoch"]
    assert (run / "logs" / "report" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))


def test_mlflow_gets_the_loss_and_the_validation_metrics(finished):
    """With mlflow installed (a dev dependency), the run logs into logs/mlflow.db: one MLflow run
    named after the run folder, the loss at every iteration, the validation Dice at every epoch."""
    mlflow = pytest.importorskip("mlflow")
    _, run, _ = finished
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{run / 'logs' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == run.name
    assert [m.step for m in client.get_metric_history(found.info.run_id, "Loss")] == list(range(1, 9))
    report = json.loads((run / "logs" / "report" / "report.json").read_text())
    dice = [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "val_mean_dice")]
    assert dice == [(v["epoch"], pytest.approx(v["val_mean_dice"])) for v in report["validations"]]


def test_export_makes_a_clean_bundle(finished, tmp_path):
    cwd, run, _ = finished
    out = tmp_path / "my_bundle"
    proc = medseg("bundle", "export", str(run), "--to", str(out), "--weights", "best", cwd=cwd)
    assert proc.stdout.strip() == f"exported {out}"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "models/model.pt" in files and "configs/train.json" in files and "LICENSE" in files
    run_only = ("logs", "models/checkpoints", "run.json", "config_ran", ".")
    assert not [f for f in files if f.startswith(run_only)]
    best = weights(run / "models" / "model_best.pt")
    assert max_difference(weights(out / "models" / "model.pt"), best) == 0
    info = medseg("bundle", "info", str(out), cwd=cwd).stdout
    assert "model.pt (present)" in info
    again = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "bundle", "export", str(run), "--to", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 2 and f"{out}: exists" in again.stderr


def test_sigkill_mid_epoch_then_resume_is_bit_exact(finished, tmp_path):
    """Killed (SIGKILL, no clean-up) after the mid-epoch checkpoint at iteration 2, with two loader
    workers where the reference had none, then resumed: the same final weights, bit for bit."""
    _, reference_run, _ = finished
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "medseg.cli.main", "train", BUNDLE, "--out", str(run), *SHORT]
    cmd.append("num_workers=2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    first = run / "models" / "checkpoints" / "checkpoint_it00000002.pt"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (run / "models" / "model.pt").exists()
    resumed = medseg("train", BUNDLE, "--out", str(run), "--resume", *SHORT, "num_workers=2", cwd=tmp_path)
    assert f"run folder: {run} (resumed)" in resumed.stdout
    log = (run / "logs" / "train.log").read_text()
    resumed_at = [line for line in log.splitlines() if "resumed from checkpoint_it" in line]
    assert len(resumed_at) == 1 and " at iteration " in resumed_at[0]
    iteration = int(resumed_at[0].split(" at iteration ")[1].split()[0])
    assert iteration % 4 != 0, "the kill must land inside an epoch for this test to mean anything"
    final, reference = weights(run / "models" / "model.pt"), weights(reference_run / "models" / "model.pt")
    assert all(torch.equal(final[k], reference[k]) for k in reference)
    report = json.loads((run / "logs" / "report" / "report.json").read_text())
    assert report["iterations"] == 8 and len(report["validations"]) == 2  # the whole run, both sessions


def _probe_overrides(probe: Path) -> dict:
    """fp32 SGD (Adam's first steps are sign(g) * lr, so rounding-level gradient differences near
    zero would flip whole steps), DiceCE averaged per sample (batch=False: a batch's loss is then
    the mean of its halves'), and a handler writing each rank's weight digest after every step."""
    imports = json.loads((shipped_bundles_dir() / BUNDLE / "configs" / "train.json").read_text())["imports"]
    return {
        "max_epochs": 1, "epoch_length": 3, "val_interval": 5, "num_workers": 0, "loss#batch": False,
        "checkpoint_interval": 1, "keep_checkpoints": 3, "num_samples": 2, "patch_size": [64, 64, 16],
        "train#inferer#enabled": False,
        "optimizer": {"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": 0.1},
        "imports": [*imports, "$import ddp_probe"],
        "train#trainer#train_handlers": f"$@train#handlers + [ddp_probe.WeightDigest('{probe}')]",
    }  # fmt: skip


def _train(out: Path, overrides: dict, **kwargs) -> dict[str, torch.Tensor]:
    from medseg.workflows.train import train

    train(BUNDLE, overrides, out=out, **kwargs)
    return weights(out / "models" / "model.pt")


def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    """`medseg train --nproc-per-node 2` starts torchrun (gloo on CPU): both ranks hold the same
    weights after every step, and 3 steps of 2 ranks x 1 item end within 1e-5 of one process with
    batches of 2 items, while its last two steps moved the weights by over 1000 times that."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    probes = {name: tmp_path / f"probe_{name}" for name in ("ddp", "single")}
    for folder in probes.values():
        folder.mkdir()
    ddp = _train(tmp_path / "ddp", _probe_overrides(probes["ddp"]), nproc_per_node=2)
    doubled = {**_probe_overrides(probes["single"]), "train#sampler#batch_size": 2}
    single = _train(tmp_path / "single", doubled)
    ranks = [(probes["ddp"] / f"rank{r}.txt").read_text().split("\n") for r in (0, 1)]
    assert ranks[0] == ranks[1] and len([line for line in ranks[0] if line]) == 3
    difference = max_difference(ddp, single)
    assert difference < 1e-5
    first_step = weights(tmp_path / "single" / "models" / "checkpoints" / "checkpoint_it00000001.pt")["model"]
    assert max_difference(single, first_step) > 1000 * max(difference, 1e-8)  # steps 2-3 move far more


def test_init_from_the_shipped_bundle_with_new_labels_and_a_frozen_start(tmp_path):
    """Fine-tuning to 3 organs from the shipped 7-organ weights: every tensor but the output
    layer's comes from the shipped file; those stay equal to it for the 2 frozen iterations and
    move at the third, while the new output layer trains from the first."""
    shipped = weights(shipped_bundles_dir() / BUNDLE / "models" / "model.pt")
    run = tmp_path / "finetune"
    proc = medseg(
        "train", BUNDLE, "--out", str(run), "--init", BUNDLE, "--freeze", "2", "max_epochs=1",
        "epoch_length=3", "checkpoint_interval=1", "keep_checkpoints=3", "val_interval=5", "num_workers=0",
        "organ_ids=[1,2,3]", "num_classes=4", "train#random_transforms#0#ratios=[1,1,1,1]", cwd=tmp_path,
    )  # fmt: skip
    steps = [
        weights(run / "models" / "checkpoints" / f"checkpoint_it0000000{i}.pt")["model"] for i in (1, 2, 3)
    ]
    fits = sorted(k for k in steps[0] if k in shipped and shipped[k].shape == steps[0][k].shape)
    new = sorted(set(steps[0]) - set(fits))
    assert new and len(fits) > 10
    assert f"loaded {len(fits)} of {len(steps[0])} tensors; new (not in the source, or another shape): " in (
        proc.stderr + proc.stdout
    )
    for step in steps[:2]:
        assert all(torch.equal(step[k], shipped[k]) for k in fits)
    assert not any(torch.equal(steps[2][k], shipped[k]) for k in fits if k.endswith("weight"))
    initial = steps[0]  # the new layer has already had one step: compare it across steps instead
    assert not torch.equal(initial[new[0]], steps[2][new[0]])


def test_init_refuses_what_does_not_fit_or_does_not_exist(tmp_path):
    from medseg.errors import BundleError
    from medseg.workflows.train import train

    with pytest.raises(BundleError, match="--init nowhere/model.pt: no such file or folder"):
        train(BUNDLE, {}, out=tmp_path / "a", init="nowhere/model.pt")
    other = tmp_path / "other.pt"
    torch.save({"unrelated.weight": torch.ones(3)}, other)
    with pytest.raises(BundleError, match="none of its tensors fit"):
        train(BUNDLE, {"max_epochs": 1, "epoch_length": 1, "num_workers": 0}, out=tmp_path / "b", init=other)
    with pytest.raises(BundleError, match="--freeze needs --init"):
        train(BUNDLE, {}, out=tmp_path / "c", freeze=3)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


TAG_AS_GPU = """
import sys, torch
# PyTorch's own serialization registry: every storage is written with the location tag a GPU run
# writes ("cuda:0"), so the file loads on a CPU-only machine only through map_location.
torch.serialization.register_package(0, lambda storage: "cuda:0", lambda storage, location: None)
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
torch.save(state, sys.argv[2])
"""


def as_if_saved_on_gpu(src: Path, dst: Path) -> None:
    subprocess.run([sys.executable, "-c", TAG_AS_GPU, str(src), str(dst)], check=True)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(dst, weights_only=True)  # what a loader without map_location meets


def test_gpu_written_weights_load_on_cpu(tmp_path):
    """GPU-written weights load through medseg segment's engine and through the bundle's own
    inference config (MONAI's CheckpointLoader with map_location); a GPU-written checkpoint
    resumes on CPU in the SIGTERM test below."""
    from ignite.engine import Engine
    from monai.bundle import ConfigParser

    from medseg.bundle.engine import BundleEngine

    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundles_dir() / BUNDLE, bundle, ignore=shutil.ignore_patterns("model.pt"))
    shipped = weights(shipped_bundles_dir() / BUNDLE / "models" / "model.pt")
    as_if_saved_on_gpu(shipped_bundles_dir() / BUNDLE / "models" / "model.pt", bundle / "models" / "model.pt")
    engine = BundleEngine(bundle, device="cpu")
    assert all(torch.equal(engine.parts.network.state_dict()[k], shipped[k]) for k in shipped)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle), "device": "$torch.device('cpu')"})
    loader, network = parser.get_parsed_content("handlers#0"), parser.get_parsed_content("network")
    loader(Engine(lambda e, b: None))
    assert all(torch.equal(network.state_dict()[k], shipped[k]) for k in shipped)


def test_sigterm_saves_where_it_stopped_and_resumes_exactly(finished, tmp_path):
    """A scheduler's SIGTERM: the iteration running finishes, a checkpoint of that iteration is
    written (between the interval's), the command exits 130; resumed, the run ends as the
    uninterrupted one."""
    _, reference_run, _ = finished
    run = tmp_path / "preempted"
    cmd = [
        sys.executable,
        "-m",
        "medseg.cli.main",
        "train",
        BUNDLE,
        "--out",
        str(run),
        *SHORT,
        "num_workers=0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    first = run / "models" / "checkpoints" / "checkpoint_it00000002.pt"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "medseg: interrupted" in err
    log = (run / "logs" / "train.log").read_text()
    stopped = [line for line in log.splitlines() if "SIGTERM: stopped at iteration" in line]
    assert len(stopped) == 1
    iteration = int(stopped[0].split("at iteration ")[1].split()[0])
    assert (run / "models" / "checkpoints" / f"checkpoint_it{iteration:08d}.pt").is_file()
    assert not (run / "models" / "model.pt").exists()
    # pre-empted on a GPU machine, resumed on this CPU: the checkpoint's tensors say "cuda:0"
    stopped_at = run / "models" / "checkpoints" / f"checkpoint_it{iteration:08d}.pt"
    as_if_saved_on_gpu(stopped_at, stopped_at)
    medseg("train", BUNDLE, "--out", str(run), "--resume", cwd=tmp_path)
    final, reference = weights(run / "models" / "model.pt"), weights(reference_run / "models" / "model.pt")
    assert all(torch.equal(final[k], reference[k]) for k in reference)


def test_monai_runner_on_the_shipped_bundle_is_refused_before_writing(tmp_path):
    """`python -m monai.bundle run` with bundle_root at the shipped folder would put checkpoints
    and weights into the installed package: refused, nothing written."""
    shipped = shipped_bundles_dir() / BUNDLE
    before = tree_digest(shipped)
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"{shipped}/configs/train.json",
         "--bundle_root", str(shipped), "--max_epochs", "1", "--epoch_length", "1", "--num_workers", "0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "inside medseg's shipped bundles" in proc.stderr and "train a copy (cp -r)" in proc.stderr
    assert tree_digest(shipped) == before


def test_model_zoo_torchrun_command_on_the_mask_rcnn_bundle(tmp_path):
    """The README's plain `torchrun ... -m monai.bundle run` with the multi_gpu_train overlay, on a
    copy of the 2D Mask R-CNN bundle (DDP with unused parameters allowed, instance metrics over the
    split validation): it trains, rank 0 writes the weights and the scores, and the one validation
    image, which both ranks score, counts once: its 36 nuclei, not 72."""
    bundle = tmp_path / "bundle"
    name = "nuclei_fluo_maskrcnn"
    shutil.copytree(shipped_bundles_dir() / name, bundle, ignore=shutil.ignore_patterns("model.pt"))
    configs = [f"{bundle}/configs/train.json", f"{bundle}/configs/multi_gpu_train.json"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "monai.bundle", "run", "--bundle_root", str(bundle), "--config_file", repr(configs),
         "--max_epochs", "1", "--epoch_length", "2", "--num_workers", "0",
         "--validate#handlers#0#output_file", str(bundle / "scores.json")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file()
    scores = json.loads((bundle / "scores.json").read_text())
    assert scores["val_tp"] + scores["val_fn"] == 36  # the held-apart region's nuclei


def test_two_nodes_with_a_c10d_rendezvous(tmp_path, monkeypatch):
    """`--nnodes 2 --rdzv-endpoint HOST:PORT`, simulated with two "nodes" on this machine started
    at the same time with the same --out: they rendezvous through torchrun's c10d backend, one
    creates the run folder and the other joins it, and both ranks hold the same weights at every step."""
    import threading

    from medseg.workflows.train import train

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two "machines" on 2 cores: one thread each, as torchrun sets
    probe = tmp_path / "probe"
    probe.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs, errors = [], []

    def node() -> None:
        try:
            runs.append(train(BUNDLE, _probe_overrides(probe), out=tmp_path / "run", nnodes=2,
                              rdzv_endpoint=f"127.0.0.1:{port}"))  # fmt: skip
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=node) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a node is still waiting for the rendezvous"
    assert not errors and sorted(r.resumed for r in runs) == [False, True]  # one created, one joined
    assert (tmp_path / "run" / "models" / "model.pt").is_file()
    ranks = [(probe / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert ranks[0] == ranks[1] and len(ranks[0].splitlines()) == 3
