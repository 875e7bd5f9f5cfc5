"""nnU-Net v2's own sliding-window predictor, run on any torch network, as a timing baseline.

Calls ``nnUNetPredictor.predict_sliding_window_return_logits`` from nnunetv2 (read and tested with
nnunetv2 2.8.1, ``nnunetv2/inference/predict_from_raw_data.py`` and ``sliding_window_prediction.py``).
What that predictor does:

* Windows: per axis ``n = ceil((size - roi) / (roi * step)) + 1`` windows whose starts are spread
  evenly, ``round(i * (size - roi) / (n - 1))``, so the first starts at 0 and the last ends at the
  border (MONAI instead uses a fixed interval ``int(roi * (1 - overlap))`` and clamps the last
  window). An image smaller than the roi is zero-padded and the logits cropped back.
* One window per forward (batch 1); a background thread slices the windows and copies them to the
  device through a queue of 2.
* Gaussian importance: ``scipy.ndimage.gaussian_filter`` of a delta at ``roi // 2`` with
  ``sigma = roi / 8`` per axis (truncated at 4 sigma), scaled to a maximum of 10, stored as fp16,
  zeros replaced by the smallest non-zero value. (MONAI's is centred at ``(roi - 1) / 2``.)
* Mirroring: per window, the network also runs on every non-empty combination of the mirror axes
  (7 more forwards for 3 axes), each output is flipped back and the logits are averaged.
* Autocast: ``torch.autocast("cuda")`` (fp16) on CUDA only; on CPU the forward runs in fp32.
* Accumulation: weighted logits and weight sum in fp16 (``torch.half``) buffers, on the GPU for
  CUDA (falls back to CPU buffers on OOM), on the CPU otherwise; then one in-place division.
  The logits therefore carry fp16 precision (we return them as float32), and coarser still near
  the image border, where only window corners reach and the weights are fp16 subnormals.
* Threads: ``predict_sliding_window_return_logits`` does not touch torch's thread settings, so the
  caller's ``torch.set_num_threads`` applies. (nnU-Net's ``predict_logits_from_preprocessed_data``,
  not used here, caps threads at ``nnUNet_def_n_proc`` = 8; its CLI sets them to the CPU count.)
  Importing nnunetv2 runs ``hostname`` in a subprocess, and its dependencies set the environment
  variables ``KMP_DUPLICATE_LIB_OK=True`` (threadpoolctl) and ``ME_DSL_JIT_LIBTCC_PATH`` (blosc2).
  ``nnUNet_raw``/``_preprocessed``/``_results`` are not needed (read lazily in 2.8.1, no warning).
  If ``nnUNet_compile`` is true in the environment, nnU-Net wraps the network in ``torch.compile``.

Installing nnunetv2 as-is would replace torch (2.8.1 pulls torch 2.15 and torchvision), so:
``pip install --no-deps nnunetv2==2.8.1 acvl-utils==0.2.6 dynamic-network-architectures==0.4.4
batchgenerators==0.25.5 batchgeneratorsv2==0.3.6`` then ``pip install --no-deps threadpoolctl
blosc2 numexpr msgpack ndindex httpx idna pandas`` (the minimum to import the predictor).
"""

from __future__ import annotations

import contextlib
import io

import torch

_INSTALL_HINT = (
    "the nnU-Net baseline needs nnunetv2: pip install nnunetv2 "
    "(use --no-deps plus its import dependencies to keep your torch; see benchmarks/nnunet_baseline.py)"
)


def _nnunet():
    try:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
    except ImportError as exc:
        raise RuntimeError(_INSTALL_HINT) from exc
    return nnUNetPredictor, PlansManager, ConfigurationManager


def nnunet_version() -> str:
    """Installed nnunetv2 version (RuntimeError if it is missing)."""
    _nnunet()
    from importlib.metadata import version

    return version("nnunetv2")


def _num_classes(network: torch.nn.Module, image: torch.Tensor, roi_size, device) -> int:
    out_channels = getattr(network, "out_channels", None)  # MONAI networks have it
    if isinstance(out_channels, int):
        return out_channels
    with torch.inference_mode():  # otherwise one probe forward on a zero window
        probe = torch.zeros((1, image.shape[0], *roi_size), device=device)
        return int(network.to(device).eval()(probe).shape[1])


def nnunet_sliding_window(
    network: torch.nn.Module,
    image: torch.Tensor,
    roi_size: tuple[int, ...],
    step: float = 0.5,
    mirror_axes: tuple[int, ...] | None = None,
    device: str = "cpu",
) -> torch.Tensor:
    """nnU-Net's Gaussian sliding-window logits of ``network`` on ``image`` (C, X, Y, Z).

    ``step`` is nnU-Net's tile_step_size (0.5 = half-window steps, like MONAI overlap 0.5);
    ``mirror_axes`` None disables mirroring, (0, 1, 2) is nnU-Net's full test-time mirroring.
    Returns (num_classes, X, Y, Z) float32 on the CPU. nnU-Net moves ``network`` to ``device``
    and puts it in eval mode.
    """
    nnUNetPredictor, PlansManager, ConfigurationManager = _nnunet()
    if image.ndim != 4 or len(roi_size) != 3:
        raise ValueError("image must be (C, X, Y, Z) and roi_size 3 long")
    dev = torch.device(device)
    num_classes = _num_classes(network, image, roi_size, dev)

    # The constructor prints a notice for every non-CUDA device; keep benchmark output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(
            tile_step_size=step,
            use_gaussian=True,
            use_mirroring=mirror_axes is not None,
            perform_everything_on_device=dev.type == "cuda",
            device=dev,
            verbose=False,
            allow_tqdm=False,
        )
    # Its documented way to use an existing network (what nnUNetTrainer does for validation),
    # with the smallest plans/dataset json it reads: the patch size and the labels, whose count
    # gives the number of output channels. "architecture" is only checked for presence.
    plans = PlansManager({"label_manager": "LabelManager", "configurations": {}})
    configuration = ConfigurationManager(
        {
            "patch_size": [int(s) for s in roi_size],
            "architecture": {
                "network_class_name": f"{type(network).__module__}.{type(network).__qualname__}",
                "arch_kwargs": {},
                "_kw_requires_import": [],
            },
        }
    )
    labels = {"background": 0, **{f"class_{i}": i for i in range(1, num_classes)}}
    predictor.manual_initialization(
        network,
        plans,
        configuration,
        parameters=None,  # only used by predict_logits_from_preprocessed_data (fold ensembling)
        dataset_json={"labels": labels},
        trainer_name="nnUNetTrainer",
        inference_allowed_mirroring_axes=None if mirror_axes is None else tuple(mirror_axes),
    )
    logits = predictor.predict_sliding_window_return_logits(image)
    return logits.to(device="cpu", dtype=torch.float32)
