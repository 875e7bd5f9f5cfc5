"""The predictor against MONAI's sliding_window_inference (the reference), and its own promises:
slab-wise equals whole-volume, mirroring is symmetric, odd sizes work or fail clearly, and the
call's own memory is a slab, not the volume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet

from medseg.errors import InputError
from medseg.inference.predictor import SlidingWindowPredictor, sliding_window_predict


def small_unet(spatial_dims: int = 3, classes: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    net = UNet(
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=classes,
        channels=(8, 16, 32),
        strides=(2, 2),
        num_res_units=1,
        norm="instance",
    )
    return net.eval()


def monai_logits(x, net, roi, **kw):
    """MONAI with the predictor's defaults (MONAI's own are overlap 0.25, constant weights)."""
    kw = {"overlap": 0.5, "mode": "gaussian", **kw}
    with torch.no_grad():
        return sliding_window_inference(x, roi, kw.pop("sw_batch_size", 4), net, **kw)


@pytest.fixture(scope="module")
def net3d():
    return small_unet(3)


@pytest.mark.parametrize(
    ("shape", "roi", "options"),
    [
        ((1, 1, 70, 50, 33), (32, 32, 16), {}),  # larger than the window, sizes off the step
        ((1, 1, 64, 40, 24), (32, 32, 16), {"overlap": 0.25, "sw_batch_size": 3}),
        ((1, 1, 48, 48, 20), (32, 32, 16), {"mode": "constant", "sw_batch_size": 1}),
        ((2, 1, 40, 36, 20), (32, 32, 16), {"padding_mode": "replicate"}),  # a batch of two
        ((1, 1, 20, 15, 9), (32, 32, 16), {"padding_mode": "replicate"}),  # smaller than the window
        ((1, 1, 40, 40, 1), (32, 32, 8), {}),  # one slice
        ((1, 1, 40, 40, 28), (32, 32, -1), {}),  # -1: the whole axis, as in MONAI
    ],
)
def test_equals_monai_sliding_window_fp32(net3d, shape, roi, options):
    torch.manual_seed(1)
    x = torch.rand(shape)
    reference = monai_logits(x, net3d, roi, **options)
    logits = sliding_window_predict(x, net3d, roi, **options)
    assert logits.shape == reference.shape
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=0)
    label = sliding_window_predict(x, net3d, roi, output="label", **options)
    assert label.dtype == torch.uint8 and label.shape == (shape[0], 1, *shape[2:])
    assert torch.equal(label[:, 0].long(), reference.argmax(1))
    probabilities = sliding_window_predict(x, net3d, roi, output="probabilities", **options)
    torch.testing.assert_close(probabilities, reference.softmax(1), atol=1e-6, rtol=0)


def test_2d_input_equals_monai():
    net = small_unet(2)
    torch.manual_seed(2)
    x = torch.rand(1, 1, 100, 77)
    reference = monai_logits(x, net, (32, 32))
    torch.testing.assert_close(sliding_window_predict(x, net, (32, 32)), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("output", ["logits", "label"])
def test_slab_path_equals_whole_volume(net3d, output):
    torch.manual_seed(3)
    x = torch.rand(1, 1, 40, 36, 90)  # the slab axis is the long one: many slabs
    slabs = sliding_window_predict(x, net3d, (32, 32, 16), sw_batch_size=5, output=output)
    whole = sliding_window_predict(x, net3d, (32, 32, 16), sw_batch_size=5, output=output, slab=False)
    if output == "label":
        assert torch.equal(slabs, whole)
    else:  # the same sums, added in another order
        torch.testing.assert_close(slabs, whole, atol=1e-5, rtol=0)


def mirror_symmetric(x: torch.Tensor) -> torch.Tensor:
    for dim in (2, 3, 4):
        x = x + x.flip(dim)
    return x


@pytest.mark.parametrize("shape", [(1, 1, 50, 41, 20), (1, 1, 64, 48, 24)])
def test_mirroring_is_symmetric_on_a_symmetric_input(net3d, shape):
    torch.manual_seed(4)
    x = mirror_symmetric(torch.rand(shape))
    plain = sliding_window_predict(x, net3d, (32, 32, 16))
    mirrored = sliding_window_predict(x, net3d, (32, 32, 16), mirror_axes=(0, 1, 2))
    for dim in (2, 3, 4):
        assert (plain - plain.flip(dim)).abs().max() > 0.1  # the network itself is not symmetric
        torch.testing.assert_close(mirrored, mirrored.flip(dim), atol=1e-5, rtol=0)


def test_mirroring_equals_mean_of_monai_on_mirrored_images(net3d):
    """Where MONAI's window grid is itself symmetric (image - window a multiple of the step),
    mirroring equals the mean over the 8 mirrored images predicted by MONAI, flipped back."""
    torch.manual_seed(5)
    x = torch.rand(1, 1, 64, 48, 24)  # (64 - 32) % 16 == 0, (48 - 32) % 16 == 0, (24 - 16) % 8 == 0
    dims_sets = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
    reference = sum(
        monai_logits(x.flip(d), net3d, (32, 32, 16)).flip(d) if d else monai_logits(x, net3d, (32, 32, 16))
        for d in dims_sets
    ) / len(dims_sets)
    mirrored = sliding_window_predict(x, net3d, (32, 32, 16), mirror_axes=(0, 1, 2))
    torch.testing.assert_close(mirrored, reference, atol=1e-5, rtol=0)


def test_inferer_keeps_meta_and_passes_arguments(net3d):
    x = MetaTensor(torch.rand(1, 1, 40, 40, 20), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    inferer = SlidingWindowPredictor(roi_size=(32, 32, 16), output="label")
    label = inferer(x, net3d)
    assert isinstance(label, MetaTensor)
    torch.testing.assert_close(label.affine, x.affine)
    reference = monai_logits(x.as_tensor(), net3d, (32, 32, 16)).argmax(1, keepdim=True)
    assert torch.equal(label.as_tensor().long(), reference)


def test_bf16_stays_close_to_fp32(net3d):
    torch.manual_seed(6)
    x = torch.rand(1, 1, 48, 40, 24)
    fp32 = sliding_window_predict(x, net3d, (32, 32, 16))
    bf16 = sliding_window_predict(x, net3d, (32, 32, 16), amp=True)
    assert bf16.dtype == torch.float32
    scale = fp32.abs().max()
    assert 0 < (bf16 - fp32).abs().max() < 0.05 * scale  # bf16 really ran, and stayed close


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((1, 1, 40, 40), {"roi_size": (32, 32, 16)}, "2 spatial dimensions"),
        ((1, 1, 40, 40, 20), {"roi_size": (32, 32, 16), "mirror_axes": (3,)}, "mirror axes [3]"),
        ((1, 1, 40, 40, 20), {"roi_size": (32, 32, 16), "output": "argmax"}, "unknown predictor output"),
    ],
)
def test_clear_errors(net3d, shape, kwargs, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sliding_window_predict(torch.rand(shape), net3d, **kwargs)


def test_network_that_changes_the_size_is_refused():
    def halves(x):
        return x[:, :, ::2, ::2, ::2]

    with pytest.raises(InputError, match="maps a"):
        sliding_window_predict(torch.rand(1, 1, 40, 40, 20), halves, (32, 32, 16))


MEMORY_CHILD = """
import json
from pathlib import Path

import torch

from medseg.inference.predictor import sliding_window_predict


def resident():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return [int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")]


torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Conv3d(1, 14, 1).eval()
x = torch.rand(1, 1, 128, 128, 512)
sliding_window_predict(x[..., :32], net, (64, 64, 16), output="label", workers=1)  # warm up
try:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak from here on
except OSError as error:  # a kernel or container that does not allow it
    raise SystemExit(print(json.dumps({"cannot_reset": str(error)})))
start = resident()[0]
sliding_window_predict(x, net, (64, 64, 16), output="label", workers=1)
print(json.dumps({"call": resident()[1] - start, "monai_output": 14 * x.numel() * 4}))
"""


def test_the_call_holds_a_slab_not_the_volume():
    """What the call itself allocates: its peak resident memory (VmHWM, reset at its start) less
    the resident memory at its start, in a fresh process (``ru_maxrss``, a high-water mark of the
    whole process, cannot show it; in a process that freed memory before, the call reuses it).
    14 classes on 128x128x512: MONAI's float32 output alone is 448 MiB; the predictor's slab
    (15 x 24 planes of 128x128 float32, 24 MiB) and label map (8 MiB) take 50-64 MiB measured."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak resident memory")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.splitlines()[-1])
    if "cannot_reset" in measured:
        pytest.skip(f"cannot reset the peak resident memory here: {measured['cannot_reset']}")
    assert measured["call"] < measured["monai_output"] / 4, measured


@pytest.mark.gpu
def test_gpu_equals_cpu(net3d):
    x = torch.rand(1, 1, 70, 50, 33)
    cpu = sliding_window_predict(x, net3d, (32, 32, 16))
    gpu = sliding_window_predict(x.cuda(), net3d.cuda(), (32, 32, 16))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
