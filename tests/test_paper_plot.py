"""jobs/paper/plot.py: the time-to-target table that jobs/paper/RESULTS.md quotes.

Hand-made run folders with known curves pin the target rule (75% of the way from the median
initial window to the lowest final median), the first crossing in virtual time and in env
steps, the virtual seconds per 1k env steps, and the ratio against Rennala NIGT."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "..", "jobs", "paper", "plot.py")


def fake_run(path, rows):
    """metrics.jsonl as `nigt-hpc simulate` writes it, reduced to what plot.py reads: one
    record per round, 20 episodes each, so the 20-episode window is full from the first."""
    os.makedirs(path)
    with open(path + "/metrics.jsonl", "w") as f:
        for t, steps, ret in rows:
            f.write(json.dumps({"time_s": t, "env_steps": steps, "episodes": 20,
                                "return_window": ret}) + "\n")


def plot(out, *args):
    """Run plot.py on the folder OUT: what it printed, and the table it wrote."""
    p = subprocess.run([sys.executable, PLOT, str(out), *args], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout, (out / "table.md").read_text()


def test_table_times_steps_and_rate(tmp_path):
    out = tmp_path / "2_reacher"
    # Rennala: -30 -> -10, crossing -15 at t = 300 (3000 steps); 1k steps cost 100 s
    for s in (0, 1):
        fake_run(str(out / f"rennala_nigt-s{s}"),
                 [(100.0, 1000, -30.0), (200.0, 2000, -20.0), (300.0, 3000, -14.0),
                  (400.0, 4000, -10.0)])
    # AFedPG: same returns per env step, 1k steps cost 1000 s: 10x later in virtual time
    for s in (0, 1):
        fake_run(str(out / f"afedpg-s{s}"),
                 [(1000.0, 1000, -30.0), (2000.0, 2000, -20.0), (3000.0, 3000, -14.0),
                  (4000.0, 4000, -10.0)])
    printed, table = plot(out, "--logx")
    # initial -30, lowest final median -10: target -30 + 0.75 * 20 = -15
    assert "target (auto): -15 " in printed
    assert "| rennala_nigt | 2 | 2/2 | 300 | 300, 300 | 3000 | 100 |" in table
    assert "| afedpg | 2 | 2/2 | 3000 | 3000, 3000 | 3000 | 1000 |" in table
    assert "afedpg / rennala_nigt time to -15: 10.00x" in table
    assert (out / "figure.png").stat().st_size > 0


def test_a_method_that_misses_on_most_seeds_has_no_time(tmp_path):
    out = tmp_path / "2_reacher"
    for s in (0, 1, 2):
        fake_run(str(out / f"rennala_nigt-s{s}"),
                 [(10.0, 100, -30.0), (20.0, 200, -10.0)])
    # two of three seeds never reach the target: the median is "not reached"
    fake_run(str(out / "sync_nigt-s0"), [(10.0, 100, -30.0), (20.0, 200, -10.0)])
    for s in (1, 2):
        fake_run(str(out / f"sync_nigt-s{s}"), [(10.0, 100, -30.0), (20.0, 200, -29.0)])
    _, table = plot(out, "--target", "-12")
    assert "| sync_nigt | 3 | 1/3 | inf | 20, inf, inf | inf |" in table
    assert "sync_nigt / rennala_nigt time to -12: not reached" in table


def fake_hetero_run(path, rows):
    """A heterogeneous run's metrics.jsonl, reduced to what plot.py reads per worker."""
    os.makedirs(path)
    with open(path + "/metrics.jsonl", "w") as f:
        for t, steps, per_worker, grads in rows:
            f.write(json.dumps({"time_s": t, "env_steps": steps, "return_per_worker": per_worker,
                                "grads_per_worker": grads}) + "\n")


def test_hetero_tables_give_each_workers_own_return(tmp_path):
    out = tmp_path / "4_humanoid_hetero"
    # Malenia: worker 1 sends 5 then 15 gradients, so its 20-episode window fills only in
    # round 2, where it is the gradient-weighted mean (50*5 + 60*15)/20 = 57.5 (unweighted:
    # 55); worker 0's window is round 2's 20 alone (200).  Objective (200 + 57.5)/2 = 128.75.
    fake_hetero_run(str(out / "malenia_nigt-s0"),
                    [(10.0, 100, [100.0, 50.0], [20, 5]), (20.0, 200, [200.0, 60.0], [20, 15])])
    # AFedPG: both windows full from round 1; final (300 + 40)/2 = 170
    fake_hetero_run(str(out / "afedpg-s0"),
                    [(10.0, 100, [100.0, 50.0], [20, 20]), (20.0, 200, [300.0, 40.0], [20, 20])])
    _, table = plot(out, "--target", "120")
    assert "| malenia_nigt | 1 | 1/1 | 20 | 20 | 200 |" in table
    assert "| malenia_nigt | 128.8 [128.8, 128.8] | 128.8 |" in table
    assert "| afedpg | 170 [170, 170] | 170 |" in table
    assert "| malenia_nigt | 200 (200) | 57.5 (57.5) | 40:20 |" in table
    assert "| afedpg | 300 (300) | 40 (40) | 40:40 |" in table
