"""One writer per folder: an exclusive lock file that names the process holding it.

A ``mmint fit`` holds its run directory and a ``mmint benchmark`` its suite folder while they
write. The lock is an ``flock`` on ``<folder>/.mmint.lock`` (the kernel drops it when the holder
dies, however it dies), and the file holds the holder's PID, host and start time so that a
second writer can say who holds the folder. A lock file left by a killed process is taken over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from mmint.errors import InputError

LOCK_NAME = ".mmint.lock"

#: folders this process holds (a nested hold of the same folder is a no-op)
_HELD: set[str] = set()


class FolderBusy(InputError):
    """Another live process writes to the folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _busy(folder: Path, info: dict[str, Any]) -> FolderBusy:
    pid = info.get("pid", "?")
    since = info.get("started", "?")
    what = info.get("command", "mmint")
    return FolderBusy(
        f"the folder is in use by process {pid} ({what}, host {info.get('host', '?')}, "
        f"since {since})",
        str(folder),
        f"wait for process {pid} to finish or stop it, or write to another folder",
    )


@contextmanager
def folder_lock(folder: str | Path, command: str = "mmint") -> Iterator[dict[str, Any]]:
    """Hold ``folder`` for this process while the block runs.

    Parameters
    ----------
    folder
        The folder (created if needed).
    command
        What holds it, shown to a second writer (``mmint fit``, ``mmint benchmark``).

    Yields
    ------
    dict
        ``{"took_over": pid or None}``: the PID of a killed process whose stale lock was taken.

    Raises
    ------
    FolderBusy
        When another live process holds the folder.
    """
    from mmint.io import WriteFailed

    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteFailed.of(path, err) from err
    key = str(folder.resolve())
    if key in _HELD:
        yield {"took_over": None}
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # a read-only folder: one line naming it
            raise WriteFailed.of(path, err) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            flocked = True
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy(folder, _holder(path)) from None
            flocked = False  # no flock on this file system: the PID in the file decides
            fd = -1
        if flocked:
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file as we opened it: retry
                os.close(fd)
                continue
        break
    previous = _holder(path)
    old_pid = previous.get("pid")
    if not flocked and old_pid and old_pid != os.getpid() and _alive(int(old_pid)):
        raise _busy(folder, previous)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    text = json.dumps(info)
    if flocked:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    else:
        path.write_text(text)
    took_over = old_pid if old_pid and old_pid != os.getpid() else None
    _HELD.add(key)
    try:
        yield {"took_over": took_over}
    finally:
        _HELD.discard(key)
        try:
            # a folder made read-only (or removed) meanwhile: the error that ends the
            # command is the one to show, not this one
            with suppress(OSError):
                path.unlink(missing_ok=True)
        finally:
            if fd >= 0:
                os.close(fd)
