"""No fault can hang a job: the round guard every engine runs under.

Three mechanisms, one object (:class:`RoundGuard`), one per rank:

* **Abort channel.**  A stop signal must be honoured within a poll interval, not at the
  next round boundary (which can be a minute away).  The signalled rank tells every other
  rank with one tiny ``Isend`` on ``TAG_ABORT``; each rank keeps one ``Irecv`` from any
  source posted and tests it at its polls (every ``mpi.poll_every_steps`` env steps, every
  slice of an emulated delay), at most once per ``ABORT_TEST_S``.  Every rank then abandons
  the round and meets the others at the boundary, where the partial round is discarded: the
  checkpoint is the state at the previous boundary, which every rank holds unchanged.
* **Watchdog at the boundary and within a round.**  A rank waits for the others in a tested
  ``Ibarrier``; each non-root rank tells rank 0 when it arrives (``TAG_ARRIVE``) and rank 0
  tells each of them, so after the bound rank 0 can name the ranks that never came, and the
  others can tell whether rank 0 itself is the one missing.  A round that outlasts the bound
  (Malenia waits for every worker) ends the job the same way.  The bound is
  ``run.watchdog_s``, or automatically ``max(watchdog floor, 10 x the longest round so
  far)``; once a stop signal or ``run.max_time_s`` has arrived it shrinks to
  ``run.stop_grace_s`` (at least 3 x the longest round once the time limit passed).
* **A thread that needs no MPI.**  If this rank's own main thread is stuck (an env step that
  never returns), nothing above runs on it.  A daemon thread watches the heartbeat that
  every poll leaves and the signal wake-up pipe (written by the C-level handler even while
  the main thread is busy in C code); after a signal plus ``2 x stop_grace_s`` without a
  heartbeat, or no heartbeat for ``2 x bound + 10`` s, it writes rank 0's boundary
  checkpoint, prints one ``error:`` line naming the rank and the phase, and ends the
  process, which makes the launcher end the job.  Its bounds are longer than the MPI-level
  ones, so a rank that is alive names the culprit first.

An ``os._exit`` called while training (by an environment, say) is reported and turned into
a non-zero exit, so a rank that vanishes can never make the job look successful.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

import numpy as np
from mpi4py import MPI

TAG_ABORT = 31
TAG_ARRIVE = 32
FLOOR_S = 120.0  # the automatic bound never goes below this (first rounds compile nothing,
# but an env can be slow to reset; a user who knows better sets run.watchdog_s)
START_S = 600.0  # the bound on the first meeting (ranks may still be loading their envs)
ABORT_TEST_S = 1e-3  # a poll Tests the abort Irecv at most this often: each Test is an MPI
# progress call (4-20 µs measured under MPICH on a loaded machine, at ~1000 polls a round),
# and a stop signal is honoured at round scale, so a millisecond later changes nothing
_REAL_EXIT = os._exit


class RoundGuard:
    """Abort channel, boundary watchdog and heartbeat thread of one rank (see module doc)."""

    def __init__(self, comm: MPI.Comm, stop_flag, cfg: dict):
        self.comm = comm
        self.rank, self.n = comm.Get_rank(), comm.Get_size()
        self.stop_flag = stop_flag
        r = cfg["run"]
        self.fixed_s = float(r["watchdog_s"])
        self.grace_s = float(r["stop_grace_s"])
        self.max_time_s = float(r["max_time_s"])
        self.longest = 0.0  # longest completed round (seconds)
        self.t_start = time.monotonic()
        self.round_t0 = self.t_start
        self.beat = self.t_start
        self.phase = "start"
        self.signal_at: float | None = None  # when this rank first saw a stop signal
        self.aborting = False  # this round is being abandoned (signal here or elsewhere)
        self.sent_abort = False
        self.write_checkpoint = None  # rank 0: () -> None, the boundary checkpoint
        self.silent = None  # rank 0: () -> ranks that reported nothing this round
        self.lock = threading.Lock()  # held by the main thread while boundary state changes
        self._abort_buf = np.zeros(1, dtype=np.int64)
        self._abort_out = np.array([self.rank], dtype=np.int64)
        self._abort_req: MPI.Request | None = None
        self._abort_tested = -1e300  # when interrupted() last Tested the abort Irecv
        self.abort_tests = 0  # how many times it did (counted, for tests and traces)
        self._abort_sends: list = []
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._wake_r = self._wake_w = -1
        self._old_wakeup = -1

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RoundGuard:
        """Post the abort Irecv, guard ``os._exit`` and start the heartbeat thread."""
        if self.n > 1:
            self._abort_req = self.comm.Irecv(self._abort_buf, source=MPI.ANY_SOURCE,
                                              tag=TAG_ABORT)
        os._exit = self._exit_guard
        if threading.current_thread() is threading.main_thread():
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_w, False)
            try:
                self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            except ValueError:  # pragma: no cover - not the main thread after all
                self._old_wakeup = -1
        self.t_start = self.beat = self.round_t0 = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="nigt-watchdog", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread, restore ``os._exit``, and settle the abort messages."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        os._exit = _REAL_EXIT
        if self._wake_w >= 0:
            signal.set_wakeup_fd(self._old_wakeup)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        if self._abort_sends:
            MPI.Request.Waitall(self._abort_sends)
            self._abort_sends = []
        if self._abort_req is not None:
            if not self._abort_req.Test():
                self._abort_req.Cancel()
                self._abort_req.Wait()
            self._abort_req = None

    # ------------------------------------------------------------------ polls

    def start_round(self) -> None:
        """Mark the start of a round (the within-round bound counts from here)."""
        self.round_t0 = self.beat = time.monotonic()
        self.phase = "sample"

    def end_round(self) -> None:
        """Fold a completed round's length into the automatic bound."""
        self.longest = max(self.longest, time.monotonic() - self.round_t0)

    def interrupted(self) -> bool:
        """Return whether this round must be abandoned now (a poll: cheap, called often).

        A stop signal on this rank tells every other rank once; an abort from another rank
        is seen here; a round that outlasts the bound ends the job.
        """
        now = self.beat = time.monotonic()
        if self.aborting:
            return True
        if self.stop_flag is not None and self.stop_flag.requested:
            if self.signal_at is None:
                self.signal_at = now
            self.send_abort()
            self.aborting = True
            return True
        if self._abort_req is not None and now - self._abort_tested >= ABORT_TEST_S:
            self._abort_tested = now
            self.abort_tests += 1
            if self._abort_req.Test():
                self._abort_req = None
                self.aborting = True
                return True
        limit = self.bound() if self.rank == 0 else 2.0 * self.bound() + 5.0
        if now - self.round_t0 > limit:
            self.fatal(f"the round did not end within {limit:.0f} s (run.watchdog_s; "
                       f"waiting for {self.waiting_for()})", self._code())
        return False

    def send_abort(self) -> None:
        """Tell every other rank to abandon this round (once per run)."""
        if self.sent_abort or self.n == 1:
            self.sent_abort = True
            return
        self.sent_abort = True
        self._abort_sends = [self.comm.Isend(self._abort_out, dest=j, tag=TAG_ABORT)
                             for j in range(self.n) if j != self.rank]

    def waiting_for(self) -> str:
        """Return what this rank is waiting for, for the watchdog's message."""
        if self.rank != 0:
            return "rank 0"
        silent = self.silent() if self.silent is not None else []
        if silent:
            return "rank(s) " + ", ".join(map(str, silent)) + ", which reported nothing"
        return "the other ranks"

    def _code(self) -> int:
        """Return the exit status of a watchdog stop: 128 + signal after one, else 1."""
        if self.stop_flag is not None and self.stop_flag.signum is not None:
            return 128 + self.stop_flag.signum
        return 1

    def bound(self, shrink: bool = True) -> float:
        """Return the watchdog bound in force now (seconds); ``shrink=False`` ignores what a
        stop signal or the time limit does to it."""
        b = self.fixed_s if self.fixed_s > 0 else max(FLOOR_S, 10.0 * self.longest)
        if not shrink:
            return b
        if self.signal_at is not None or self.aborting:
            return min(b, self.grace_s)
        if self.max_time_s > 0 and time.monotonic() - self.t_start > self.max_time_s:
            return min(b, max(self.grace_s, 3.0 * self.longest))
        return b

    # ------------------------------------------------------------------ the boundary

    def arrive(self, rnd: int, what: str | None = None) -> None:
        """Wait until every rank has reached round ``rnd``'s boundary, watching the time.

        ``what`` names another meeting point (the start of training), whose bound is
        ``run.watchdog_s`` or ``START_S``.

        Non-root ranks tell rank 0 they arrived and learn when rank 0 did; after the bound,
        rank 0 names the ranks that never came, a non-root rank names rank 0 if it never
        came and otherwise leaves rank 0 to end the job (with a longer fallback).
        """
        self.phase = "boundary" if what is None else "start"
        what = what or f"the end of round {rnd}"
        if self.n == 1:
            return
        comm, n = self.comm, self.n
        note = np.array([rnd], dtype=np.int64)
        if self.rank == 0:
            bufs = [np.zeros(1, dtype=np.int64) for _ in range(n)]
            recvs = [comm.Irecv(bufs[j], source=j, tag=TAG_ARRIVE) for j in range(1, n)]
            sends = [comm.Isend(note, dest=j, tag=TAG_ARRIVE) for j in range(1, n)]
        else:
            buf = np.zeros(1, dtype=np.int64)
            recvs = [comm.Irecv(buf, source=0, tag=TAG_ARRIVE)]
            sends = [comm.Isend(note, dest=0, tag=TAG_ARRIVE)]
        barrier = comm.Ibarrier()
        t0 = time.monotonic()
        spins = 0
        while not barrier.Test():
            now = self.beat = time.monotonic()
            if self.stop_flag is not None and self.stop_flag.requested \
                    and self.signal_at is None:
                self.signal_at = now
            waited = now - t0
            bound = self.bound() if self.phase == "boundary" else (self.fixed_s or START_S)
            limit = bound if self.rank == 0 else 2.0 * bound + 5.0
            if waited > limit:
                if self.rank == 0:
                    missing = [j for j, r in zip(range(1, n), recvs) if not r.Test()]
                    who = ", ".join(str(j) for j in missing) or "unknown"
                    self.fatal(f"rank(s) {who} did not reach {what} "
                               f"within {waited:.0f} s (stuck in an env step, stopped, or "
                               f"gone?)", self._code(), name_self=False)
                elif not recvs[0].Test():
                    self.fatal(f"rank 0 did not reach {what} within {waited:.0f} s",
                               self._code(), name_self=False)
                else:
                    self.fatal(f"{what} was not reached by every rank within "
                               f"{waited:.0f} s, and rank 0 did not end the job", self._code())
            spins += 1
            if spins > 200:  # tested busily for a moment, then leave the core to others
                time.sleep(0.0005)
        MPI.Request.Waitall(recvs)
        MPI.Request.Waitall(sends)

    # ------------------------------------------------------------------ the end

    def fatal(self, message: str, code: int, name_self: bool = True) -> None:
        """End the whole job now: rank 0's boundary checkpoint, one line, non-zero exit."""
        who = f"rank {self.rank}: " if name_self else ""
        saved = self._emergency_checkpoint(blocking=True)
        print(f"error: {who}{message}"
              + ("; the checkpoint of the last completed round is kept" if saved else ""),
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        if self.n > 1:
            time.sleep(0.3)  # let the launcher forward the line before the job is torn down
            self.comm.Abort(code)
        _REAL_EXIT(code)

    def _emergency_checkpoint(self, blocking: bool) -> bool:
        """Write rank 0's checkpoint of the last boundary; return whether one is on disk."""
        if self.write_checkpoint is None:
            return False
        if not self.lock.acquire(timeout=5.0 if blocking else 1.0):
            return False
        try:
            self.write_checkpoint()
            return True
        except Exception as e:  # noqa: BLE001 - the job is ending; say why, keep the old one
            print(f"error: rank {self.rank}: the checkpoint could not be written "
                  f"({type(e).__name__}: {e})", file=sys.stderr, flush=True)
            return False
        finally:
            self.lock.release()

    def _exit_guard(self, code: int = 0) -> None:
        """``os._exit`` while training: say so and make the exit status non-zero."""
        print(f"error: rank {self.rank}: os._exit({code}) was called during training "
              f"(phase {self.phase}); ending the job", file=sys.stderr, flush=True)
        _REAL_EXIT(code if code else 1)

    def _watch(self) -> None:
        """The heartbeat thread: acts only when the main thread has stopped polling."""
        while not self._closed.is_set():
            if self._wake_r >= 0:
                ready, _, _ = select.select([self._wake_r], [], [], 0.25)
                if ready:
                    try:
                        data = os.read(self._wake_r, 64)
                    except OSError:
                        data = b""
                    stops = {int(signal.SIGTERM), int(signal.SIGINT), int(signal.SIGUSR1)}
                    if any(b in stops for b in data) and self.signal_at is None:
                        self.signal_at = time.monotonic()
            elif self._closed.wait(0.25):
                return
            if self._closed.is_set():
                return
            now = time.monotonic()
            silent = now - self.beat
            if self.signal_at is not None:
                limit = 2.0 * self.grace_s
                if now - self.signal_at > limit and silent > limit:
                    self._thread_fatal(f"no progress for {silent:.0f} s after a stop signal "
                                       f"(phase {self.phase})", 128 + int(signal.SIGTERM))
                continue
            limit = 2.0 * self.bound(shrink=False) + 10.0
            if silent > limit:
                self._thread_fatal(f"no progress for {silent:.0f} s (phase {self.phase}; "
                                   "an env step that never returns?)", 1)

    def _thread_fatal(self, message: str, code: int) -> None:
        if self.stop_flag is not None and self.stop_flag.signum is not None:
            code = self._code()
        saved = self._emergency_checkpoint(blocking=False)
        print(f"error: rank {self.rank}: {message}"
              + ("; the checkpoint of the last completed round is kept" if saved else ""),
              file=sys.stderr, flush=True)
        _REAL_EXIT(code)
