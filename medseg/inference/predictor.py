"""The predictor every medseg bundle and ``medseg segment`` use: sliding window with Gaussian
weighting, batched windows, mirroring test-time augmentation, mixed precision, bounded memory.

``sliding_window_predict`` is the function; ``SlidingWindowPredictor`` is the same thing as a
MONAI ``Inferer`` for bundle configs (a drop-in for ``SlidingWindowInferer``: the same argument
names, plus ``mirror_axes``, ``amp``, ``output`` and ``slab``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.data.utils import compute_importance_map
from monai.inferers import Inferer
from monai.utils import PytorchPadMode, ensure_tuple_rep, fall_back_tuple, look_up_option

from medseg.errors import InputError
from medseg.inference.autocast import autocast_dtype
from medseg.inference.sliding_window import (
    OUTPUTS,
    Sink,
    SlabAccumulator,
    _batches,
    _first_tensor,
    _flip,
    _window,
    accumulator_device,
    check_sizes,
    choose_slab_axis,
    padding,
    plan_windows,
    ring_depth,
)
from medseg.inference.workers import ordered_map, resolve_workers

log = logging.getLogger(__name__)


def sliding_window_predict(
    image: torch.Tensor,
    network: Callable[[torch.Tensor], torch.Tensor],
    roi_size: Sequence[int] | int,
    sw_batch_size: int = 4,
    overlap: Sequence[float] | float = 0.5,
    mode: str = "gaussian",
    sigma_scale: Sequence[float] | float = 0.125,
    padding_mode: str = "constant",
    cval: float = 0.0,
    mirror_axes: Sequence[int] = (),
    amp: bool = False,
    output: str = "logits",
    slab: bool = True,
    progress: bool = False,
    workers: int | None = None,
) -> torch.Tensor:
    """Predict ``image`` (N, C_in, *spatial) window by window.

    Returns (N, C, *spatial) float32 ``logits`` or softmax ``probabilities``, or (N, 1, *spatial)
    ``label`` (argmax; uint8 up to 256 classes). Windows run on the image's device; the
    accumulator lives there too when it fits (half the free GPU memory), else on the CPU.
    ``mirror_axes`` (spatial, e.g. (0, 1, 2)) averages the predictions of every mirrored copy of
    the image; ``amp`` runs the network in bf16 (fp16 on GPUs without bf16); ``slab=False`` keeps
    the whole image in the accumulator (the result is the same; used to test that it is).
    ``workers`` batches of windows run at once, each on its share of the torch threads (default:
    two on a CPU with two or more threads, one on a GPU).
    """
    if output not in OUTPUTS:
        raise InputError(f"unknown predictor output {output!r}; choose from {', '.join(OUTPUTS)}")
    if isinstance(image, MetaTensor):
        meta_source, image = image, image.as_tensor()
    else:
        meta_source = None
    spatial = tuple(image.shape[2:])
    roi = ensure_tuple_rep(roi_size, len(spatial)) if isinstance(roi_size, int) else tuple(roi_size)
    mirror_axes = tuple(mirror_axes or ())
    check_sizes(spatial, roi, mirror_axes)
    roi = fall_back_tuple(roi, spatial)  # -1: the whole axis
    pad = padding(spatial, roi)
    if any(pad):
        image = F.pad(image, pad, mode=look_up_option(padding_mode, PytorchPadMode), value=cval)
    results = [
        _predict_one(
            image[n],
            network,
            roi,
            sw_batch_size,
            ensure_tuple_rep(overlap, len(spatial)),
            compute_importance_map(roi, mode=mode, sigma_scale=sigma_scale, device=image.device)[None],
            mirror_axes,
            amp,
            output,
            slab,
            progress,
            workers,
        )
        for n in range(image.shape[0])
    ]
    crop = [slice(pad[2 * k], pad[2 * k] + s) for k, s in enumerate(reversed(spatial))][::-1]
    result = torch.stack(results)[(slice(None), slice(None), *crop)]
    if meta_source is not None:  # keep the image's meta (affine, applied operations) for Invertd
        result = MetaTensor(result, meta=meta_source.meta, applied_operations=meta_source.applied_operations)
    return result


def _predict_one(
    image: torch.Tensor,
    network: Callable,
    roi: tuple[int, ...],
    batch_size: int,
    overlap: tuple[float, ...],
    importance: torch.Tensor,
    mirror_axes: tuple[int, ...],
    amp: bool,
    output: str,
    slab: bool,
    progress: bool,
    workers: int | None,
) -> torch.Tensor:
    """One image (C_in, *spatial), already padded to at least the window size."""
    size = tuple(image.shape[1:])
    axis = choose_slab_axis(size, roi) if slab else 0
    windows = plan_windows(size, roi, overlap, mirror_axes, axis)
    depth = ring_depth(windows, roi, axis, batch_size) if slab else size[axis]
    device = image.device
    dtype = autocast_dtype(device, amp)
    accumulator = sink = None

    def forward(batch: list) -> torch.Tensor:
        with torch.inference_mode():
            x = torch.stack([_flip(image[_window(w.start, roi)], w.flip) for w in batch])
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return _first_tensor(network(x)).float()

    batches = list(_batches(windows, batch_size))
    results = ordered_map(forward, batches, resolve_workers(device, workers))
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(batches), desc="windows", unit="batch", leave=False)
    for batch, y in results:
        if tuple(y.shape[2:]) != roi:
            raise InputError(
                f"the network maps a {roi} window to {tuple(y.shape[2:])}; the predictor needs the same size"
            )
        if accumulator is None:
            accumulator, sink = _allocate(y.shape[1], size, axis, depth, device, output, len(windows), amp)
        accumulator.finish_until(batch[0].start[axis])
        with torch.inference_mode():
            y *= importance  # symmetric: weighting before flipping back is the same
            for w, prediction in zip(batch, y, strict=True):
                accumulator.add(_flip(prediction, w.flip), importance, w.start)
    accumulator.finish_until(size[axis])
    return sink.result


def _allocate(
    channels: int,
    size: tuple[int, ...],
    axis: int,
    depth: int,
    compute: torch.device,
    output: str,
    n_windows: int,
    amp: bool,
) -> tuple[SlabAccumulator, Sink]:
    voxels = math.prod(size)
    planes = voxels // size[axis]
    result_bytes = voxels * (1 if output == "label" else 4 * channels)
    ring_bytes = planes * min(depth, size[axis]) * (channels + 1) * 4
    device = accumulator_device(compute, result_bytes + ring_bytes)
    log.info(
        "sliding window: %d windows, %s, %s; accumulator %.2f GB + result %.2f GB on %s",
        n_windows,
        "bf16/fp16" if amp else "fp32",
        output,
        ring_bytes / 1e9,
        result_bytes / 1e9,
        device,
    )
    sink = Sink(output, channels, size, axis, device)
    return SlabAccumulator(channels, size, axis, depth, device, sink), sink


class SlidingWindowPredictor(Inferer):
    """``sliding_window_predict`` as a MONAI ``Inferer`` (bundle ``inferer``)."""

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 4,
        overlap: Sequence[float] | float = 0.5,
        mode: str = "gaussian",
        sigma_scale: Sequence[float] | float = 0.125,
        padding_mode: str = "constant",
        cval: float = 0.0,
        mirror_axes: Sequence[int] = (),
        amp: bool = False,
        output: str = "logits",
        slab: bool = True,
        progress: bool = False,
        workers: int | None = None,
    ) -> None:
        super().__init__()
        self.options = dict(
            roi_size=roi_size,
            sw_batch_size=sw_batch_size,
            overlap=overlap,
            mode=mode,
            sigma_scale=sigma_scale,
            padding_mode=padding_mode,
            cval=cval,
            mirror_axes=mirror_axes,
            amp=amp,
            output=output,
            slab=slab,
            workers=workers,
        )
        self.progress = progress

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        def run(x: torch.Tensor) -> torch.Tensor:
            return network(x, *args, **kwargs)

        return sliding_window_predict(inputs, run, progress=self.progress, **self.options)
