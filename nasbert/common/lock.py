"""One writer per folder: an advisory lock file that a second process is refused on, naming the holder.

    with folder_lock(run_dir, what="train-supernet"):
        ...  # only this process writes run_dir

The lock is `FOLDER/.nasbert.lock`, holding the holder's pid, host, command and start time (JSON), so the
refusal can say who holds the folder. Where the OS has `fcntl.flock`, the file is locked with it: the kernel
drops the lock when its holder dies, however it dies, so a crashed job never blocks the next one (its stale
file is simply taken over). Elsewhere (no fcntl, or a file system that refuses flock) the file is created
exclusively and a leftover from a dead pid on this host is taken over; one from another host is not, as
its pid cannot be checked from here. The lock is re-entrant within a process and removed on exit.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nasbert.errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".nasbert.lock"
_HELD: dict[Path, int] = {}  # folders this process holds -> nesting depth
_HELD_GUARD = threading.Lock()
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}  # file systems without flock


def lock_path(folder: str | Path) -> Path:
    return Path(folder) / LOCK_FILE


def other_entries(folder: str | Path) -> list[Path]:
    """The folder's entries except the lock file: what 'is this folder empty?' should look at."""
    folder = Path(folder)
    return [p for p in folder.iterdir() if p.name != LOCK_FILE] if folder.is_dir() else []


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str, enabled: bool = True) -> Iterator[Path]:
    """Hold `folder` (created if missing) for this process while the block runs; UserError if another holds it.

    `what` names the command in the holder's record ("train-supernet"); `enabled=False` makes it a no-op
    (e.g. on DDP ranks other than 0, whose rank 0 holds the folder for the whole job).
    """
    folder = Path(folder)
    if not enabled:
        yield lock_path(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    with _HELD_GUARD:
        nested = key in _HELD
        if nested:
            _HELD[key] += 1
    if nested:
        try:
            yield lock_path(folder)
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    release = _acquire(folder, what)
    with _HELD_GUARD:
        _HELD[key] = 1
    try:
        yield lock_path(folder)
    finally:
        with _HELD_GUARD:
            del _HELD[key]
        release()


def holder_record(what: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": what,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def _acquire(folder: Path, what: str):
    """Take the lock; returns the function that releases it."""
    if fcntl is not None:
        try:
            return _acquire_flock(folder, what)
        except OSError as error:
            if error.errno not in _NO_FLOCK:
                raise
    return _acquire_exclusive(folder, what)


def _acquire_flock(folder: Path, what: str):
    path = lock_path(folder)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(_refusal(folder, _read_holder(path, wait_s=0.5))) from None
            raise
        # A releasing holder unlinks the file before unlocking it: if what we locked is no longer the file at
        # the path, a third process may hold a new one; try again on that.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    data = json.dumps(holder_record(what)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)

    def release() -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # closing drops the flock

    return release


def _acquire_exclusive(folder: Path, what: str):
    """Without flock: create the file exclusively; take over a leftover from a dead pid on this host."""
    path = lock_path(folder)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_holder(path, wait_s=0.5)
            if holder is not None and _is_dead_here(holder):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            raise UserError(_refusal(folder, holder)) from None
        with os.fdopen(fd, "w") as file:
            json.dump(holder_record(what), file)
        mine = os.stat(path).st_ino

        def release() -> None:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == mine:
                    path.unlink()

        return release
    raise UserError(_refusal(folder, _read_holder(path)))


def _read_holder(path: Path, wait_s: float = 0.0) -> dict[str, Any] | None:
    """The holder's record; a holder that has just taken the lock may not have written it yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            record = json.loads(path.read_text())
            if isinstance(record, dict):
                return record
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _is_dead_here(holder: dict[str, Any]) -> bool:
    """True if the holder ran on this host and its pid is gone."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _refusal(folder: Path, holder: dict[str, Any] | None) -> str:
    if holder is None:
        who = "another process (its lock file names no holder)"
    else:
        who = (f"{holder.get('command', 'another command')} (pid {holder.get('pid', '?')} on "
               f"{holder.get('host', '?')}, since {holder.get('started', '?')})")
    return (f"{folder} is in use by {who}; wait for it to finish or choose another folder "
            f"(remove {lock_path(folder)} only if that process is gone)")
