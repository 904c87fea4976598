"""One writer per folder: a second process is refused with a sentence naming the holder; a dead holder's
lock is taken over; the lock is re-entrant in one process and gone after it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nasbert.common import lock as lock_module
from nasbert.common.lock import LOCK_FILE, folder_lock, other_entries
from nasbert.errors import UserError

HOLD = textwrap.dedent("""
    import sys
    from nasbert.common.lock import folder_lock
    with folder_lock(sys.argv[1], what=sys.argv[2]):
        print("held", flush=True)
        sys.stdin.read()  # hold until the test closes our stdin
""")


def _holder(folder: Path, what: str = "train-supernet") -> subprocess.Popen:
    """A second process holding `folder` until its stdin is closed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def _release(process: subprocess.Popen) -> None:
    process.stdin.close()
    assert process.wait(timeout=60) == 0


def test_a_second_process_is_refused_with_a_sentence_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder, "train-supernet")
    try:
        with pytest.raises(UserError) as error, folder_lock(folder, what="export"):
            pass
        message = str(error.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message and "train-supernet" in message
        assert str(folder) in message and "\n" not in message
        record = json.loads((folder / LOCK_FILE).read_text())
        assert record["pid"] == holder.pid and record["command"] == "train-supernet" and record["started"]
    finally:
        _release(holder)
    assert not (folder / LOCK_FILE).exists()  # removed by its holder
    with folder_lock(folder, what="export"):  # free again
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_killed_holder_never_blocks_the_next_run(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == holder.pid  # its record is left behind
    with folder_lock(folder, what="train-supernet"):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()


RACE = textwrap.dedent("""
    import sys, time
    from nasbert.common.lock import folder_lock
    from nasbert.errors import UserError
    while time.time() < float(sys.argv[2]):
        pass
    try:
        with folder_lock(sys.argv[1], what="race"):
            print("won", flush=True)
            time.sleep(1.0)
    except UserError:
        print("refused", flush=True)
""")


def test_of_processes_starting_at_once_exactly_one_wins(tmp_path):
    import time

    start = time.time() + 2.0
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "run"), str(start)],
                               stdout=subprocess.PIPE, text=True) for _ in range(4)]
    results = sorted(p.communicate(timeout=120)[0].strip() for p in racers)
    assert results == ["refused", "refused", "refused", "won"]


def test_reentrant_in_one_process_and_disabled_on_other_ranks(tmp_path):
    folder = tmp_path / "new" / "run"
    with folder_lock(folder, what="export"):
        assert folder.is_dir() and (folder / LOCK_FILE).exists() and other_entries(folder) == []
        with folder_lock(folder, what="export"):
            pass
        assert (folder / LOCK_FILE).exists()  # the outer hold goes on
    assert not (folder / LOCK_FILE).exists()
    with folder_lock(tmp_path / "rank1", what="train-supernet", enabled=False):
        assert not (tmp_path / "rank1").exists()


def test_without_flock_a_dead_pid_on_this_host_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "fcntl", None)
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "host": socket.gethostname(), "command": "train-supernet", "started": "earlier"}
    (folder / LOCK_FILE).write_text(json.dumps(record))
    with folder_lock(folder, what="export"):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_FILE).exists()

    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        for pid, host in ((live.pid, socket.gethostname()), (dead.pid, "another-host")):
            (folder / LOCK_FILE).write_text(json.dumps({**record, "pid": pid, "host": host}))
            with pytest.raises(UserError, match=f"pid {pid} on {host}"), folder_lock(folder, what="export"):
                pass
    finally:
        live.stdin.close()
        live.wait()
