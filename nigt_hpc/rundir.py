"""The run directory's guard rails: one job at a time (a lock), run files written without
following symlinks, and path checks done before anything is created.

The lock is an ``fcntl.flock`` on ``RUN_DIR/.lock`` held by rank 0 for the job's lifetime.
The kernel drops a flock when its holder exits in any way (``kill -9`` included), so a
``.lock`` left by a dead job is simply taken over; the pid, host and start time written in it
are only there to tell the user who holds a live one.  The file is removed when the job
ends normally.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
import uuid

from .config import ConfigError

LOCK = ".lock"
NAME_MAX = 255  # bytes in one path component (Linux, macOS and the usual file systems)
PATH_MAX = 4096  # bytes in a whole path (Linux)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def check_path(path: str, what: str) -> None:
    """Raise ConfigError if ``path`` is too long for the file system (before creating it)."""
    raw = os.fsencode(os.path.abspath(path))
    if len(raw) > PATH_MAX:
        raise ConfigError(f"{what} {path[:40]!r}...: path is {len(raw)} bytes long; the "
                          f"limit is {PATH_MAX}")
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX:
            raise ConfigError(f"{what}: the path component {os.fsdecode(part[:40])!r}... is "
                              f"{len(part)} bytes long; the limit is {NAME_MAX}")


def _holder(fd: int) -> str:
    """Return the lock file's 'pid P on host H (started T)' text, or a fallback."""
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").split()
        info = dict(item.split("=", 1) for item in text if "=" in item)
        return (f"pid {info['pid']} on host {info['host']} (started "
                f"{info.get('started', '?').replace('T', ' ')})")
    except (OSError, KeyError, ValueError):
        return "another job"


_HELD: list[RunLock] = []  # locks this process holds, for abandon() on a failure


class RunLock:
    """An exclusive lock on one run directory, held until :meth:`release` or exit.

    With ``create`` the directory is created if missing; if the job then fails before
    writing a run file, :func:`abandon` removes the directory again.
    """

    def __init__(self, run_dir: str, create: bool = False):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK)
        self.fd: int | None = None
        self.created = False
        if create and not os.path.isdir(run_dir):
            try:
                os.makedirs(run_dir)
            except OSError as e:
                raise ConfigError(f"run directory {run_dir!r} cannot be created "
                                  f"({e.strerror})") from None
            self.created = True

    def acquire(self) -> RunLock:
        """Take the lock and write this job's pid/host in it; return self.

        ConfigError (exit 2) if another live job holds it, or if ``.lock`` is a symlink.
        """
        try:
            fd = self._lock()
        except BaseException:
            self._remove_created()
            raise
        self.fd = fd
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        text = f"pid={os.getpid()} host={socket.gethostname()} started={stamp}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        _HELD.append(self)
        return self

    def _lock(self) -> int:
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise ConfigError(f"run directory {self.run_dir!r}: {LOCK} is a symbolic "
                                      "link; refusing to follow it") from None
                raise ConfigError(f"run directory {self.run_dir!r}: cannot create {LOCK} "
                                  f"({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _holder(fd)
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError(f"run directory {self.run_dir!r} is in use by "
                                      f"{holder}; wait for it to end or choose another "
                                      "--out") from None
                raise ConfigError(f"run directory {self.run_dir!r}: cannot lock {LOCK} "
                                  f"({e.strerror})") from None
            # the holder we raced with may have removed the file after we opened it: then
            # we hold a lock on an unlinked inode, and must lock the file now at the path
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
        raise ConfigError(f"run directory {self.run_dir!r}: {LOCK} keeps changing")

    def _remove_created(self) -> None:
        if self.created:
            try:
                os.rmdir(self.run_dir)  # only if empty: never removes a file
            except OSError:
                pass

    def release(self, abandoned: bool = False) -> None:
        """Remove the lock file (still holding the lock, so no one can lose a race) and
        unlock it; ``abandoned``: also remove the directory if this job created it and
        nothing else is in it."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        if self in _HELD:
            _HELD.remove(self)
        if abandoned:
            self._remove_created()


def abandon() -> None:
    """Release every lock this process holds after a failure (see RunLock.release)."""
    for lock in list(_HELD):
        lock.release(abandoned=True)


def is_run_file(name: str) -> bool:
    """Return whether a name in a run directory counts as content (not the lock)."""
    return name != LOCK


def _tmp_name(final: str) -> str:
    head, tail = os.path.split(final)
    return os.path.join(head, f".{tail}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def write_atomic(final: str, write, binary: bool = True) -> str:
    """Write ``final`` through a fresh temp file in its directory, then ``os.replace``.

    ``write(fh)`` fills the temp file.  The temp file is created with O_CREAT|O_EXCL|
    O_NOFOLLOW under a unique name, so a planted file or symlink is never opened or followed;
    ``os.replace`` replaces a symlink at ``final`` itself, not its target.  On any error the
    temp file is removed and the error re-raised, so a full disk leaves no partial file.
    Return ``final``.
    """
    tmp = _tmp_name(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                       {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return final


def write_text(final: str, text: str) -> str:
    """Write ``text`` to ``final`` atomically (see :func:`write_atomic`); return the path."""
    return write_atomic(final, lambda fh: fh.write(text), binary=False)


def open_nofollow(path: str, mode: str):
    """Return ``path`` opened in ``mode`` ('a' append text, 'r+b' update) without following
    a symlink at it; OSError(ELOOP) if it is one."""
    flags = {"a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "r+b": os.O_RDWR,
             "rb": os.O_RDONLY}[mode]
    fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        return os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {}))
    except BaseException:
        os.close(fd)
        raise
