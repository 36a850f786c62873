"""Extra metrics writers chosen by ``run.log``: metrics.csv and TensorBoard event files.

metrics.jsonl (metrics.py) stays the source of truth: resume, ``report`` and the
checkpoint's offset read it.  The writers here copy each record into other formats, on
rank 0 only.  On a resume metrics.csv is rebuilt from the metrics.jsonl that the resume
has just cut back to the checkpoint, so the two always hold the same rounds; the
TensorBoard writer starts a new event file that tells TensorBoard to drop the old file's
events from the first redone round on (``purge_step``).
"""

from __future__ import annotations

import csv
import io
import json
import os

from .config import ConfigError
from .rundir import open_nofollow, write_text

CSV = "metrics.csv"
TB_DIR = "tb"
# metrics.csv cells that are lists (one value per worker) hold them as JSON text
_LIST = json.dumps


def check_writers(cfg: dict) -> None:
    """Raise ConfigError if a writer in ``run.log`` cannot run here (before any file)."""
    if "tensorboard" in cfg["run"]["log"]:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ConfigError("run.log asks for 'tensorboard', which needs the tensorboardX "
                              "package: pip install 'nigt_hpc[tensorboard]'") from None


def _cell(v) -> str:
    """Return one CSV cell: "" for null, JSON for a list, repr-exact text for a number."""
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return _LIST(v)
    return json.dumps(v) if isinstance(v, float) else str(v)


class CSVWriter:
    """metrics.csv: a header of the first record's keys, one flushed row per round.

    A key that a later record lacks is an empty cell; a key the first record did not have
    is left out of the CSV (metrics.jsonl keeps it).
    """

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, CSV)
        self.fh = None
        self.cols: list[str] | None = None

    def _row(self, record: dict) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [_cell(record.get(c)) for c in self.cols])
        return buf.getvalue()

    def rebuild(self, jsonl_path: str) -> None:
        """Rewrite metrics.csv from metrics.jsonl (a resume, after its cut), atomically."""
        with open_nofollow(jsonl_path, "rb") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        if not rows:  # no round kept (a stop before round 0 ended): the header comes later
            write_text(self.path, "")
            return
        self.cols = list(rows[0])
        head = ",".join(self.cols) + "\n"
        write_text(self.path, head + "".join(self._row(r) for r in rows))

    def write(self, record: dict) -> None:
        """Append ``record`` as a row (the header first, at the first record)."""
        if self.fh is None:
            fresh = self.cols is None
            if fresh:
                self.cols = list(record)
            self.fh = open_nofollow(self.path, "a")
            if fresh:
                self.fh.write(",".join(self.cols) + "\n")
        self.fh.write(self._row(record))
        self.fh.flush()  # nothing lost on a kill, as metrics.jsonl

    def close(self) -> None:
        """Close metrics.csv."""
        if self.fh is not None:
            self.fh.close()


class TensorBoardWriter:
    """Scalars of every numeric field under ``RUN_DIR/tb``, step = the record's round.

    Per-worker lists become one tag per worker (``grads_per_worker/0``, ...); fields that
    are null in a round are skipped for it.
    """

    SKIP = ("round",)

    def __init__(self, run_dir: str, purge_step: int | None = None):
        from tensorboardX import SummaryWriter

        self.w = SummaryWriter(os.path.join(run_dir, TB_DIR), purge_step=purge_step,
                               flush_secs=5)

    def write(self, record: dict) -> None:
        """Add the record's scalars at step ``record["round"]``."""
        step = record["round"]
        for k, v in record.items():
            if k in self.SKIP:
                continue
            if isinstance(v, list):
                for i, x in enumerate(v):
                    if isinstance(x, (int, float)) and not isinstance(x, bool):
                        self.w.add_scalar(f"{k}/{i}", x, step)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                self.w.add_scalar(k, v, step)

    def flush(self) -> None:
        """Push buffered events to the file (at a checkpoint)."""
        self.w.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.w.close()


def clear(run_dir: str) -> None:
    """Remove what these writers left in ``run_dir`` (``--force``): metrics.csv and the
    event files in tb/ (a symlink at either is removed itself, never followed)."""
    path = os.path.join(run_dir, CSV)
    if os.path.lexists(path):
        os.remove(path)
    _unlink_tb(run_dir)
    tb = os.path.join(run_dir, TB_DIR)
    if os.path.isdir(tb):
        for name in os.listdir(tb):
            if name.startswith("events.out.tfevents."):
                os.remove(os.path.join(tb, name))
        if not os.listdir(tb):
            os.rmdir(tb)


def _unlink_tb(run_dir: str) -> None:
    # a planted tb/ symlink would have the event files written through it
    tb = os.path.join(run_dir, TB_DIR)
    if os.path.islink(tb):
        os.remove(tb)


def make_writers(cfg: dict, run_dir: str, resume_round: int | None = None) -> list:
    """Return the writers ``run.log`` asks for besides metrics.jsonl, opened lazily.

    ``resume_round``: the checkpoint's last round on a resume, after metrics.jsonl was cut
    back to it; metrics.csv is rebuilt from it and rounds after it are redone.
    """
    names = cfg["run"]["log"]
    out = []
    if "csv" in names:
        out.append(CSVWriter(run_dir))
        if resume_round is not None:
            out[-1].rebuild(os.path.join(run_dir, "metrics.jsonl"))
    if "tensorboard" in names:
        _unlink_tb(run_dir)
        out.append(TensorBoardWriter(run_dir, None if resume_round is None
                                     else resume_round + 1))
    return out


def policy_std_fn(spec, inputs=None):
    """Return ``theta -> {field: value}``: how random the policy still is.

    ``gaussian_logstd``: ``policy_std``, the mean of ``exp(log_std)`` over action dims (the
    last act_dim entries of theta; state-independent).  The softplus head's sigma and a
    softmax head's entropy depend on the state: ``policy_std`` (mean sigma) and
    ``policy_entropy`` (mean entropy, nats) are then taken over ``inputs()``, up to 32
    policy inputs of rank 0's last finished trajectory (None where there is none, as on
    AFedPG's server, which samples nothing).
    """
    import numpy as np

    from .kernels import SIGMA_MIN
    from .policy import HEADS

    k = spec.act_dim
    if spec.head == HEADS["gaussian_logstd"]:
        return lambda theta: {"policy_std": float(np.mean(np.exp(theta[-k:])))}
    field = "policy_entropy" if spec.head == HEADS["softmax"] else "policy_std"
    sizes = [int(x) for x in spec.sizes]
    from .trained import forward

    def measure(theta) -> dict:
        x = None if inputs is None else inputs()
        if x is None or len(x) == 0:
            return {field: None}
        z = forward(theta, sizes, x)
        if field == "policy_std":  # softplus sigma, as the kernels' head computes it
            return {field: float(np.mean(np.logaddexp(0.0, z[:, k : 2 * k]) + SIGMA_MIN))}
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return {field: float(np.mean(-(np.exp(logp) * logp).sum(axis=1)))}

    return measure
