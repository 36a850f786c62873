"""Aggregation rules driven by scripted finish orders (no transport)."""

import numpy as np
import pytest

from nigt_hpc.aggregation import AggregateMalenia, AggregateRennala, AggregateSync, harmonic_mean


def drive(rule, order):
    """Feed finishes in ``order`` until the rule is done; return the accepted flags."""
    flags = []
    for w in order:
        flags.append(rule.on_finished(w))
        if rule.done():
            break
    return flags


def test_rennala_accepts_exactly_M_whoever_finishes_first():
    rule = AggregateRennala(n=3, M=5)
    flags = drive(rule, [0, 0, 2, 0, 0, 1, 1])
    assert flags == [True] * 5 and rule.done()
    assert rule.M_i.tolist() == [4, 0, 1]
    assert rule.on_finished(1) is False  # the (M+1)-th is refused
    np.testing.assert_array_equal(rule.weights(), [0.2, 0.2, 0.2])
    rule.start_round()
    assert rule.m == 0 and not rule.done()


def test_malenia_waits_for_every_worker_and_the_harmonic_mean():
    rule = AggregateMalenia(n=2, M=4)  # stop when HM(M_1, M_2) >= 2
    drive(rule, [0] * 50)
    assert not rule.done()  # worker 1 has nothing yet: 1/0 = inf
    assert rule.M_i.tolist() == [50, 0]
    rule.on_finished(1)
    # HM(50, 1) = 2 / (1/50 + 1) < 2
    assert not rule.done()
    rule.on_finished(1)
    # HM(50, 2) = 2 / (0.02 + 0.5) = 3.85 >= 2
    assert rule.done()
    np.testing.assert_allclose(rule.weights(), [1 / (2 * 50), 1 / (2 * 2)])


def test_malenia_stops_exactly_at_equal_counts():
    rule = AggregateMalenia(n=3, M=9)
    flags = drive(rule, [0, 1, 2] * 10)
    assert sum(flags) == 9 and rule.M_i.tolist() == [3, 3, 3]


@pytest.mark.parametrize("seed", range(5))
def test_malenia_condition_matches_the_definition_for_random_orders(seed):
    rng = np.random.default_rng(seed)
    n, M = 4, 10
    rule = AggregateMalenia(n, M)
    speeds = rng.uniform(0.1, 1.0, n)
    order = rng.choice(n, size=500, p=speeds / speeds.sum())
    prev_done = False
    for w in order:
        rule.on_finished(w)
        hm = harmonic_mean(rule.M_i)
        assert rule.done() == (hm >= M / n - 1e-12)
        if rule.done():
            assert not prev_done
            break
        prev_done = rule.done()
    assert rule.done()
    assert abs(rule.weights() @ rule.M_i - 1.0) < 1e-12  # sum_i M_i/(n M_i) = 1


def test_sync_waits_for_all_B():
    rule = AggregateSync(n=2, B=2)
    assert drive(rule, [0, 0, 0, 1]) == [True, True, False, True]
    assert not rule.done() and rule.wants_more(1) and not rule.wants_more(0)
    rule.on_finished(1)
    assert rule.done()
    np.testing.assert_array_equal(rule.weights(), [0.25, 0.25])


def test_harmonic_mean_is_zero_until_all_have_one():
    assert harmonic_mean(np.array([3, 0])) == 0.0
    assert harmonic_mean(np.array([2, 2])) == 2.0
