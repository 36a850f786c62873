"""``nigt-hpc report``: text, plots, and a scaling study from real runs."""

import csv

import pytest

from tests.test_mpi_cli import launch, mpiexec

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if mpiexec() is None:
        pytest.skip("no mpiexec")
    d = tmp_path_factory.mktemp("runs")
    out = {}
    for n in (1, 2):
        out[n] = d / f"n{n}"
        p = launch(n, "train", "--out", str(out[n]), "--quiet", "--set", "run.max_rounds=0",
                   "--set", "run.max_env_steps=20000", "--set", "run.target_return=inf",
                   cwd=d)
        assert p.returncode == 0, p.stderr
    return out


def test_plot_writes_return_and_timer_pngs(cli, runs, tmp_path):
    pytest.importorskip("matplotlib")
    p = cli("report", runs[2], "--plot", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for name in ("plot_return.png", "plot_timers.png"):
        data = (runs[2] / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000


def test_scaling_study_writes_csv_and_pngs(cli, runs, tmp_path):
    pytest.importorskip("matplotlib")
    study = tmp_path / "study"
    p = cli("report", "--scaling", study, runs[2], runs[1], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(open(study / "scaling.csv")))
    assert [int(r["ranks"]) for r in rows] == [1, 2]
    assert float(rows[0]["efficiency"]) == 1.0 and float(rows[0]["speedup"]) == 1.0
    assert float(rows[1]["steps_per_s"]) > 0 and "share_env_step" in rows[0]
    for name in ("scaling_rate.png", "scaling_efficiency.png", "scaling_phases.png"):
        assert (study / name).read_bytes()[:8] == PNG
    assert "| 2 |" in p.stdout


def test_report_of_a_missing_directory_is_one_error_line(cli, tmp_path):
    p = cli("report", tmp_path / "nope", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1


def test_report_of_a_simulate_run_names_its_virtual_workers(cli, tmp_path):
    out = tmp_path / "s"
    p = cli("simulate", "--workers", "4", "--set", "delays.compute=const", "--set",
            "run.max_rounds=1", "--out", out, "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = cli("report", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert "4 virtual workers" in first and "?" not in first
    assert "virtual s" in p.stdout.splitlines()[1]


def test_plots_and_report_do_not_import_each_other():
    # report imports plots (for --plot); plots and phases must not import report back,
    # not even inside a function, or the two modules form a circle again
    import ast
    import os

    from tests.conftest import ROOT

    for name in ("plots.py", "phases.py"):
        with open(os.path.join(ROOT, "nigt_hpc", name), encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}
        assert not {m for m in imported if m and m.split(".")[-1] == "report"}, name
