"""Window batches in worker threads: results in order, bounded look-ahead, errors surface, torch
threads restored; the predictor gives MONAI's result with any number of workers."""

from __future__ import annotations

import random
import threading
import time

import pytest
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet

from medseg.inference.predictor import sliding_window_predict
from medseg.inference.workers import ordered_map, resolve_workers


def test_results_come_in_order_although_they_finish_out_of_order():
    rng = random.Random(0)
    delays = [rng.uniform(0, 0.02) for _ in range(30)]

    def slow_square(k: int) -> int:
        time.sleep(delays[k])
        return k * k

    assert list(ordered_map(slow_square, range(30), 3)) == [(k, k * k) for k in range(30)]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_look_ahead_is_bounded(workers):
    taken = []
    seen_ahead = []

    def items():
        for k in range(20):
            taken.append(k)
            yield k

    for k, _ in ordered_map(lambda k: k, items(), workers):
        seen_ahead.append(len(taken) - 1 - k)
    assert max(seen_ahead) <= workers


def test_an_error_in_a_worker_reaches_the_caller_and_threads_are_restored():
    before = torch.get_num_threads()

    def fails_on_five(k: int) -> int:
        if k == 5:
            raise ValueError("window 5")
        return k

    with pytest.raises(ValueError, match="window 5"):
        list(ordered_map(fails_on_five, range(20), 2))
    assert torch.get_num_threads() == before


def test_workers_split_the_torch_threads():
    original = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        seen = set()

        def threads(_):
            seen.add((threading.get_ident(), torch.get_num_threads()))

        list(ordered_map(threads, range(8), 2))
        assert {n for _, n in seen} == {2}
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(original)


def test_resolve_workers():
    assert resolve_workers(torch.device("cuda"), None) == 1
    assert resolve_workers(torch.device("cpu"), 3) == 3
    expected = 2 if torch.get_num_threads() >= 2 else 1
    assert resolve_workers(torch.device("cpu"), None) == expected
    with pytest.raises(ValueError, match="at least 1"):
        resolve_workers(torch.device("cpu"), 0)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_predictor_equals_monai_with_any_number_of_workers(workers):
    torch.manual_seed(0)
    net = UNet(3, 1, 3, channels=(8, 16), strides=(2,), num_res_units=1, norm="instance").eval()
    x = torch.rand(1, 1, 70, 45, 40)  # 3 x 2 x 4 windows: several batches of 3
    with torch.no_grad():
        reference = sliding_window_inference(x, (32, 32, 16), 3, net, overlap=0.5, mode="gaussian")
    logits = sliding_window_predict(x, net, (32, 32, 16), sw_batch_size=3, workers=workers)
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=0)
