"""Emulated delay models and the interruptible sleep."""

import time

import numpy as np

from nigt_hpc import config
from nigt_hpc.delays import Delay, comm_factors, compute_factors


def cfg_with(*sets):
    return config.load(None, list(sets))


def test_models_follow_the_paper_indexing_from_one():
    np.testing.assert_array_equal(compute_factors(cfg_with("delays.compute=sqrt"), 4),
                                  np.sqrt([1, 2, 3, 4]))
    np.testing.assert_array_equal(compute_factors(cfg_with("delays.compute=linear"), 3),
                                  [1, 2, 3])
    np.testing.assert_array_equal(
        compute_factors(cfg_with("delays.compute=from_list", "delays.compute_list=[1, 5]"),
                        5), [1, 5, 1, 5, 1])
    k = comm_factors(cfg_with("delays.comm=sqrt_d14"), 3, d=10_000)
    np.testing.assert_allclose(k, np.sqrt([1, 2, 3]) * 10.0)
    assert not compute_factors(cfg_with(), 3).any()


def test_exp_speeds_are_fixed_by_the_seed():
    a = compute_factors(cfg_with("delays.compute=exp"), 6)
    b = compute_factors(cfg_with("delays.compute=exp"), 6)
    c = compute_factors(cfg_with("delays.compute=exp", "run.seed=1"), 6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and (a > 0).all()


def test_step_delays_add_up_and_sleep_is_interruptible():
    d = Delay(per_step_s=1e-4)
    t0 = time.perf_counter()
    for _ in range(100):
        assert d.step(None) is False
    assert time.perf_counter() - t0 >= 0.0095  # 100 x 0.1 ms owed and slept
    t0 = time.perf_counter()
    assert Delay(0).sleep(1.0, interrupted=lambda: True) is True
    assert time.perf_counter() - t0 < 0.05  # stopped after one 1 ms slice


def test_per_trajectory_delay_is_a_floor_from_begin_and_can_be_cut_short():
    from nigt_hpc.delays import make_delay

    d = make_delay(cfg_with("delays.per=trajectory", "delays.compute_unit_s=0.02"), 2.0)
    assert not d.active  # nothing per env step
    d.begin()
    t0 = time.perf_counter()
    assert d.finish(None) is False
    assert time.perf_counter() - t0 >= 0.04 - 1e-3  # h_i * unit after begin(), at least
    d.begin()
    assert d.finish(lambda: True) is True  # the round ended while "computing"
    step = make_delay(cfg_with("delays.compute_unit_s=0.001"), 3.0)
    assert step.active and step.per_step_s == 0.003 and step.finish(None) is False


class Calls:
    """An ``interrupted`` that counts its calls and says True from the ``at``-th on."""

    def __init__(self, at=None):
        self.n, self.at = 0, at

    def __call__(self):
        self.n += 1
        return self.at is not None and self.n >= self.at


def test_a_sleep_asks_interrupted_at_most_once_per_poll_s():
    every = Delay(0, slice_s=1e-4, poll_s=0.0)  # ask after every slice
    calls = Calls()
    assert every.sleep(0.005, calls) is False
    # one slice may oversleep the whole 5 ms on a loaded machine, so only ">= 1" is certain;
    # the claim is that every slice was followed by one question
    assert calls.n == every.polls == every.slices >= 1
    rare = Delay(0, slice_s=1e-4, poll_s=1e9)  # only the first slice of its life is asked
    calls = Calls()
    assert rare.sleep(0.005, calls) is False and rare.sleep(0.002, calls) is False
    assert calls.n == rare.polls == 1 and rare.slices >= 2  # each sleep slept at least once
    before = rare.slices
    for _ in range(60):  # the per-step path goes through the same sleep
        rare.per_step_s = 1e-3
        rare.step(calls)
    assert calls.n == 1 and rare.slices > before  # it slept, and asked nothing more


def test_an_interrupted_sleep_stops_at_the_poll_that_says_so():
    d = Delay(0, slice_s=1e-4, poll_s=0.0)
    calls = Calls(at=3)
    assert d.sleep(10.0, calls) is True
    assert calls.n == 3 == d.polls == d.slices
