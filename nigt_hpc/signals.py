"""Signal handling for batch jobs: the handler only records the signal (docs/PITFALLS.md, R1).

All ranks agree on it at the next round boundary (it rides in the round's Allreduce),
write a checkpoint together, and exit with status 128 + signal number.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopFlag:
    """Set by SIGTERM, SIGUSR1 or SIGINT; read by the engine at round boundaries."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def install(self) -> StopFlag:
        """Install the handler for every signal in SIGNALS; return self."""
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, self._handler)
        return self

    def uninstall(self) -> None:
        """Put back the handlers that were there before :meth:`install` (a notebook's)."""
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def requested(self) -> bool:
        """Return whether a stop signal has arrived."""
        return self.signum is not None

    def exit_status(self) -> int:
        """Return 128 + the signal number (the shell convention), SIGTERM if none here."""
        return 128 + (self.signum or signal.SIGTERM)
