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


@pytest.mark.parametrize("rule", [AggregateSync(3, 2), AggregateRennala(3, 5),
                                  AggregateMalenia(3, 5)])
def test_weights_are_each_workers_local_weight(rule):
    """The virtual clock's weights() and an MPI rank's local_weight are one arithmetic."""
    drive(rule, [0, 1, 0, 2, 0, 1, 2, 2, 0, 1, 1, 2])
    w = rule.weights()
    assert w.dtype == np.float64 and w.shape == (3,)
    for i, c in enumerate(rule.M_i):
        assert w[i] == rule.local_weight(i, int(c))  # the very same bits


def test_the_old_weight_formulas_hold_bit_for_bit():
    """Sync 1/(n B), Rennala 1/M, Malenia 1/(n M_i) as numpy wrote them before, and 0 for
    a Malenia worker with no gradient (it adds zeros, not 0 * inf)."""
    assert AggregateSync(4, 3).local_weight(2, 7) == 1.0 / (4 * 3)
    assert AggregateRennala(4, 30).local_weight(1, 0) == 1.0 / 30
    mal = AggregateMalenia(4, 30)
    for c in (1, 2, 3, 7, 1000):
        assert mal.local_weight(0, c) == (1.0 / (4 * np.array([c], dtype=np.float64)))[0]
    assert mal.local_weight(3, 0) == 0.0


def test_rennala_counter_questions_agree_with_on_finished():
    """The RMA plane asks accepts_at/done_at of the round's total; on_finished and done are
    the same predicates on the rule's own count."""
    rule = AggregateRennala(n=2, M=3)
    for m in range(6):
        assert rule.accepts_at(m) == (m < 3) and rule.done_at(m) == (m >= 3)
        assert rule.done() == rule.done_at(rule.m)
        assert rule.on_finished(m % 2) == rule.accepts_at(min(m, 3))
    assert rule.m == 3 and not rule.wants_more(0)


def test_wants_more_is_false_once_a_round_is_over():
    for rule in (AggregateRennala(2, 2), AggregateMalenia(2, 2)):
        assert rule.wants_more(0)
        drive(rule, [0, 1, 0, 1])
        assert rule.done() and not rule.wants_more(0) and not rule.wants_more(1)


def test_registry_has_every_config_choice_and_builds_its_parts():
    from nigt_hpc import config, registry
    from nigt_hpc.nigt import NIGT, PolicyGradient

    assert config.SCHEMA["algo"]["name"].choices == registry.ALGORITHMS
    cfg = config.load(None, [])
    theta0 = np.zeros(4)
    for name in registry.ALGORITHMS:
        algo = registry.lookup(name)
        cfg["algo"]["name"] = name
        assert registry.of(cfg) is algo
        opt = algo.make_optimizer(cfg, theta0)
        assert isinstance(opt, PolicyGradient if algo.outer == "pg" else NIGT)
        if algo.engine == "server":
            assert algo.rule is None and algo.control == "server"
            continue
        rule = algo.make_rule(3, 5, 2)
        assert isinstance(rule, algo.rule) and not rule.done()
        if algo.control == "counter":  # the planes read only the accepted total
            assert rule.accepts_at(0) and rule.done_at(5)
        assert algo.reuse_stale == (algo.control != "none")
    with pytest.raises(ValueError, match="unknown algo.name"):
        registry.lookup("nope")
