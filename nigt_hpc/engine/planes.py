"""Rennala's control plane: which finished gradients are the round's first M, and when the
round is over.  Two implementations behind one interface, chosen by ``mpi.control``.  Both
only move counts: what a count means is the round's rule object (``aggregation.py``, a rule
of control kind "counter" in ``registry.py``), which decides acceptance and the stop.

Interface (every rank, every round)::

    start_round(rnd, rule, local)
                                before sampling; ``rule`` is this round's rule object,
                                ``local`` the rank's LocalRound
    poll() -> bool              is the round over?  (rank 0 of "p2p" serves the plane here)
    report(g) -> True/False/None
                                True: accepted (the caller adds g); False: rejected (or not
                                reported: the round was already over); None: pending, the
                                plane keeps a copy of g and adds it to ``local`` once settled
    end_round(reports)          after the round's Allreduce; reports[j] = reports of rank j
    free()                      collective, after the last round

* :class:`RMAPlane` -- an int64 counter on rank 0 (control.RMACounter).  A report is one
  ``Fetch_and_op``; the rule's ``accepts_at`` of the value it returns says at once whether
  the gradient is among the first M (and ``done_at`` of a read, whether the round is
  over).  Right only where passive-target RMA progresses while rank 0 computes outside MPI
  (MPICH's ch4, Open MPI's ``osc sm``), not where the target must enter MPI (``osc ucx``).
  There (the probe passed) rank 0's own polls load the counter from its window memory
  instead of a ``Fetch_and_op`` on itself.
* :class:`P2PCoordinator` (rank 0) / :class:`P2PWorker` (ranks >= 1) -- point-to-point
  messages that need no asynchronous progress.  A worker ``Isend``s one tiny report per
  finished gradient.  Rank 0, which samples too, ``Test``s its posted ``Irecv``s at its
  polls (every ``mpi.poll_every_steps`` env steps and every slice of an emulated-delay
  sleep, at most once per ``SERVE_EVERY_S``) and before each of its own reports: it offers
  reports to the rule (``on_finished``) in their arrival order until the rule is ``done``,
  so the rule's ``M_i[j]`` is the a_j below and worker j's accepted gradients are exactly
  its first a_j reports (messages from one rank do not overtake each other).  Rank 0
  answers a poll's new acceptances with one ack per worker carrying a_j so far, and when the
  rule is done (the M-th is accepted) it sends every worker a stop carrying its final a_j.
  All of a round's messages to a worker travel on one tag through one posted ``Irecv`` at a
  time, so they are taken in the order sent and the stop is always the last.

  A worker does not wait for the answer to a report: it keeps the gradient in one of
  ``PENDING_MAX`` buffers (d floats each) and samples on; at its polls it ``Test``s for
  messages and adds the acked gradients to its sum in report order.  The stop settles the
  rest (its first a_j - grads pending are accepted, the others discarded), so nothing is
  unresolved when the worker enters the Allreduce.  Only if all ``PENDING_MAX`` buffers are
  taken does the worker ``Wait`` (inside MPI) for rank 0's next answer, which comes within
  one of rank 0's poll intervals (or ``SERVE_EVERY_S``, the longer).  Bounds, counted per
  round: a worker's reports after the M-th acceptance are at most ``PENDING_MAX`` (any
  later one needs a buffer freed by an answer sent after the stop, which it would read
  after the stop); it learns of the stop within one serving interval of rank 0 plus one
  poll interval of its own.  After the Allreduce every rank knows every rank's report count,
  so rank 0 drains the reports still in flight (no answer is sent after a stop) and no
  message outlives its round.

:func:`probe_passive_progress` decides ``mpi.control = "auto"``: rank 0 computes outside MPI
while every other rank times one ``Fetch_and_op`` on it.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from mpi4py import MPI

from .control import RMACounter

TAG_REPORT = 21  # worker -> rank 0: [round]
TAG_ANSWER = 22  # rank 0 -> worker: [round, a_j, kind]
ACK, STOP = 0, 1
PENDING_MAX = 4  # un-answered gradients a worker holds (memory: PENDING_MAX * d floats)
SERVE_EVERY_S = 1e-3  # rank 0 of "p2p" Tests for reports at most this often between its own
# reports: a poll comes every delay slice (~0.3 ms), and each Test is an MPI progress call
# (4-16 µs measured under MPICH on a loaded machine); a worker's gradient takes far longer
PROBE_SPIN_S = 0.2  # rank 0 computes at most this long without entering MPI
PROBE_LIMIT_S = 0.01  # a Fetch_and_op slower than this while rank 0 computes: no progress


class RMAPlane:
    """Rennala over the RMA counter; ``base`` is the counter's value when the round began."""

    name = "rma"

    def __init__(self, comm: MPI.Comm, local_reads: bool = False):
        self.counter = RMACounter(comm)
        self.base = 0  # the counter is never reset: a late reader cannot mix up two rounds
        # Rank 0 hosts the counter: where the others' Fetch_and_op progress without it (the
        # probe passed), its polls load the value instead of a Fetch_and_op on itself (one
        # poll per delay slice, ~1000 a round: 5-20 µs each under MPICH and Open MPI on a
        # loaded machine, against 0.1-1 µs).  A stale load only delays "over" by one poll,
        # never says it early (the counter only grows); acceptance is still the atomic
        # Fetch_and_op of report(), so exactly M enter.
        self._mem = self.counter.local_view() if local_reads else None
        self.local_polls = 0  # polls answered by a load (counted, for tests and traces)

    def start_round(self, rnd: int, rule, local) -> None:
        """Remember this round's rule and the local round the reports count into."""
        self.rule, self.local = rule, local

    def poll(self) -> bool:
        """Return whether the rule says the round is over (one read of the total: rank 0
        reads its own window memory where the probe showed passive progress)."""
        if self._mem is not None:
            self.local_polls += 1
            return self.rule.done_at(int(self._mem[0]) - self.base)
        return self.rule.done_at(self.counter.read() - self.base)

    def report(self, g: np.ndarray) -> bool:
        """Return whether the rule accepts this gradient, given how many finished before it
        this round (one Fetch_and_op): exactly M accepted."""
        self.local.reports += 1
        return self.rule.accepts_at(self.counter.fetch_add(1) - self.base)

    def force_stop(self) -> None:
        """Nothing to send: every rank left the round on its own abort."""

    def end_round(self, reports: np.ndarray) -> None:
        """Move the base past every fetch_add of this round."""
        self.base += int(reports.sum())

    def free(self) -> None:
        """Free the window (collective)."""
        self.counter.free()


class P2PCoordinator:
    """Rank 0's side of the message plane: accepts in arrival order, answers, stops."""

    name = "p2p"

    def __init__(self, comm: MPI.Comm):
        self.comm, self.n = comm, comm.Get_size()
        self.base = 0  # unused; kept so a checkpoint reads the same keys under both planes
        self._bufs = [np.zeros(1, dtype=np.int64) for _ in range(self.n)]
        self._reqs = [None] + [comm.Irecv(self._bufs[j], source=j, tag=TAG_REPORT)
                               for j in range(1, self.n)]
        self.rule = None  # this round's rule: its M_i[j] is rank j's accepted count a_j
        self.acked = np.zeros(self.n, dtype=np.int64)  # a_j last sent to rank j
        self.received = np.zeros(self.n, dtype=np.int64)
        self._sends: list = []  # (buffer, request): buffers live until the round's end
        self.stopped = True
        self._served = -1e300  # when poll() last Tested for reports
        self.serves = 0  # how many times it did (counted, for tests and traces)

    def start_round(self, rnd: int, rule, local) -> None:
        """Take this round's rule (its counts start at zero) and reset the message counts."""
        self.rnd, self.rule, self.local = rnd, rule, local
        self.acked[:] = self.received[:] = 0
        self.stopped = False

    def _send(self, j: int, kind: int) -> None:
        a_j = self.rule.M_i[j]
        buf = np.array([self.rnd, a_j, kind], dtype=np.int64)
        self._sends.append((buf, self.comm.Isend(buf, dest=j, tag=TAG_ANSWER)))
        self.acked[j] = a_j

    def _take(self, j: int) -> None:
        """Take worker j's report that has arrived (offered to the rule until it is done)."""
        assert self._bufs[j][0] == self.rnd, "a report crossed a round boundary"
        self.received[j] += 1
        if not self.stopped:
            self._accept(j)
        self._reqs[j] = self.comm.Irecv(self._bufs[j], source=j, tag=TAG_REPORT)

    def _accept(self, j: int) -> bool:
        """Offer rank j's gradient to the rule; stop the round once the rule is done."""
        accepted = self.rule.on_finished(j)
        if self.rule.done():
            self.stopped = True
            for k in range(1, self.n):  # each worker's last message of the round
                self._send(k, STOP)
        return accepted

    def poll(self, force: bool = False) -> bool:
        """Take every report that has arrived and answer it (at most once per
        ``SERVE_EVERY_S`` unless ``force``); return whether the round is over."""
        if self.stopped:
            return True
        now = time.perf_counter()
        if not force and now - self._served < SERVE_EVERY_S:
            return False
        self._served = now
        self.serves += 1
        for j in range(1, self.n):
            while not self.stopped and self._reqs[j].Test():
                self._take(j)
        if not self.stopped:
            for j in range(1, self.n):
                if self.rule.M_i[j] > self.acked[j]:
                    self._send(j, ACK)
        return self.stopped

    def report(self, g: np.ndarray) -> bool:
        """Return whether rank 0's own gradient is accepted (after the reports before it)."""
        if self.poll(force=True):
            return False
        self.local.reports += 1
        return self._accept(0)

    def force_stop(self) -> None:
        """End the round now (a stop signal abandoned it): every worker gets its stop."""
        if not self.stopped:
            self.stopped = True
            for k in range(1, self.n):
                self._send(k, STOP)

    def end_round(self, reports: np.ndarray) -> None:
        """Drain the reports still in flight (rejected: the round is over) and complete the
        answers, which every worker has received (it left the round on its stop)."""
        for j in range(1, self.n):
            while self.received[j] < reports[j]:
                self._reqs[j].Wait()
                self._take(j)
        MPI.Request.Waitall([r for _, r in self._sends])
        self._sends.clear()

    def free(self) -> None:
        """Cancel the Irecvs left posted after the last round."""
        for r in self._reqs[1:]:
            r.Cancel()
            r.Wait()


class P2PWorker:
    """A rank >= 1's side of the message plane: reports without waiting for the answer."""

    name = "p2p"

    def __init__(self, comm: MPI.Comm, d: int):
        self.comm, self.d = comm, d
        self.base = 0
        self._free = [np.empty(d) for _ in range(PENDING_MAX)]  # buffers for pending g
        self._pending: deque = deque()
        self._ans = np.zeros(3, dtype=np.int64)
        self._req = None
        self._sends: list = []
        self._report_buf = np.zeros(1, dtype=np.int64)
        self.stopped = True

    def start_round(self, rnd: int, rule, local) -> None:
        """Post the Irecv of the round's first answer (rank 0 holds the rule)."""
        self.rnd, self.local = rnd, local
        self.stopped = False
        self._req = self.comm.Irecv(self._ans, source=0, tag=TAG_ANSWER)

    def _settle(self, accepted: int) -> None:
        """Add pending gradients to the local sum until ``accepted`` are in, in report order
        (the order the RMA plane adds them: the same accepted set gives the same bits)."""
        local = self.local
        while local.grads < accepted:
            g = self._pending.popleft()
            local.g_sum += g
            local.grads += 1
            self._free.append(g)

    def _take(self) -> None:
        rnd, a_j, kind = (int(x) for x in self._ans)
        assert rnd == self.rnd, "an answer crossed a round boundary"
        self._settle(a_j)
        if kind == STOP:  # the last message of the round: the rest are rejected
            self.local.discarded += len(self._pending)
            self._free.extend(self._pending)
            self._pending.clear()
            self.stopped = True
        else:
            self._req = self.comm.Irecv(self._ans, source=0, tag=TAG_ANSWER)

    def poll(self) -> bool:
        """Take the answers that have arrived; return whether the stop was among them."""
        while not self.stopped and self._req.Test():
            self._take()
        return self.stopped

    def report(self, g: np.ndarray) -> bool | None:
        """Send the report and keep a copy of g: return None (pending), or False if the
        round ended before the report could be sent."""
        if self.poll():
            return False
        while not self._free:  # every buffer pending: wait inside MPI for rank 0's answer
            self._req.Wait()
            self._take()
            if self.stopped:
                return False
        buf = self._free.pop()
        buf[:] = g
        self._pending.append(buf)
        self.local.reports += 1
        msg = np.array([self.rnd], dtype=np.int64)
        self._sends.append((msg, self.comm.Isend(msg, dest=0, tag=TAG_REPORT)))
        return None

    def force_stop(self) -> None:
        """Nothing to do here: rank 0 sends the stop of an abandoned round."""

    def end_round(self, reports: np.ndarray) -> None:
        """Complete the round's report sends (rank 0 drains them after the Allreduce); after
        an abandoned round, take rank 0's answers up to its stop, so none outlives it."""
        while not self.stopped:
            self._req.Wait()
            self._take()
        MPI.Request.Waitall([r for _, r in self._sends])
        self._sends.clear()

    def free(self) -> None:
        """Nothing is left posted: the stop ended each round's chain of Irecvs."""


def probe_passive_progress(comm: MPI.Comm) -> float:
    """Return the slowest ``Fetch_and_op`` (s) that ranks >= 1 issued on rank 0 while rank 0
    computed without entering MPI (collective; the same value on every rank).

    Rank 0 spins on numpy arithmetic, reading its own window memory, until every other
    rank's increment has landed or ``PROBE_SPIN_S`` has passed; so an operation that needs
    the target to enter MPI takes about ``PROBE_SPIN_S``, one that progresses takes µs.
    """
    ctr = RMACounter(comm)  # collective; opens the passive epoch
    slowest = 0.0
    if comm.Get_rank() == 0:
        mem = np.frombuffer(ctr.win.tomemory(), dtype=np.int64)
        x = np.ones(64)
        t_end = time.perf_counter() + PROBE_SPIN_S
        while mem[0] < comm.Get_size() - 1 and time.perf_counter() < t_end:
            x = np.sqrt(x * 1.0000001 + 1e-9)  # compute, no MPI call
    else:
        time.sleep(0.002)  # let rank 0 be inside its spin
        t0 = time.perf_counter()
        ctr.fetch_add(1)
        slowest = time.perf_counter() - t0
    slowest = comm.allreduce(slowest, op=MPI.MAX)
    ctr.free()
    return slowest


def make_plane(cfg: dict, comm: MPI.Comm, d: int):
    """Return (Rennala plane for this rank, probe seconds or None) for ``mpi.control``."""
    choice, probe_s = cfg["mpi"]["control"], None
    if comm.Get_size() > 1 and choice in ("auto", "rma"):
        # "rma" asks for the probe too: it decides whether rank 0 may poll by a load
        probe_s = probe_passive_progress(comm)
    progress = probe_s is None or probe_s <= PROBE_LIMIT_S  # one rank: the counter is local
    if choice == "auto":
        choice = "rma" if progress else "p2p"
    if choice == "rma":
        return RMAPlane(comm, local_reads=progress), probe_s
    plane = P2PCoordinator(comm) if comm.Get_rank() == 0 else P2PWorker(comm, d)
    return plane, probe_s
