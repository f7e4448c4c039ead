"""Atomic file writes: a reader never sees a half-written result, and a write that fails
leaves nothing at its path and ends in one :class:`WriteFailed` line naming it.

Every result file (``metrics.json``, ``results.csv``, ``outputs.h5mu``, ``predictions/``,
checkpoints, reports, plots) is written through :func:`atomic_path`: the content goes to a
hidden temporary file in the same folder, which is renamed onto the path only once complete.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

#: errno -> (what happened, how to fix it), for :class:`WriteFailed`'s line
_CAUSES = {
    errno.ENOSPC: ("no space left on the device", "free disk space or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space or write elsewhere"),
    errno.EACCES: ("permission denied (read-only folder?)", "make the folder writable"),
    errno.EPERM: ("operation not permitted", "make the folder writable"),
    errno.EROFS: ("read-only file system", "write elsewhere"),
    errno.ENOENT: ("its folder no longer exists", "keep the folder while the command runs"),
}


class WriteFailed(OSError):
    """Writing a result file failed; nothing partial was left at ``path``.

    ``str()`` is one line: the path, the cause and the fix (rerun the same command: what was
    finished is kept).
    """

    def __init__(self, path: str | Path, code: int | None, cause: str) -> None:
        super().__init__(code, cause)
        self.path = str(path)
        self.code = code
        self.cause = cause

    @classmethod
    def of(cls, path: str | Path, err: OSError) -> WriteFailed:
        """The failure to write ``path`` because of ``err``."""
        if isinstance(err, WriteFailed):
            return err
        text = err.strerror or " ".join(str(err).split()) or type(err).__name__
        return cls(path, err.errno, text)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (WriteFailed, (self.path, self.code, self.cause))

    def __str__(self) -> str:
        what, fix = _CAUSES.get(self.code or -1, (self.cause, "check the disk"))
        name = errno.errorcode.get(self.code or -1)
        cause = f"{what} ({name})" if name else what
        return (
            f"could not write {self.path}: {cause} - {fix}, then rerun the same command "
            "(finished results are kept)"
        )


@contextmanager
def atomic_path(
    path: str | Path, *, suffix: str = ".tmp", make_parents: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block ends, rename it onto ``path``.

    Parameters
    ----------
    path
        The file to write.
    suffix
        The temporary file's ending (e.g. ``.png`` where the writer reads the format from it).
    make_parents
        Create missing parent folders. Off for the files of a run directory, so that a run
        folder removed while it runs is not recreated holding a lone result.

    Raises
    ------
    WriteFailed
        When the block or the rename raises an ``OSError`` (no space, read-only folder, a
        vanished folder); the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(fd)
    except OSError as err:
        raise WriteFailed.of(path, err) from err
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as err:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise WriteFailed.of(path, err) from err
        raise


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def atomic_write(path: str | Path, text: str, *, make_parents: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path, make_parents=make_parents) as tmp:
        _write_text(tmp, text)


def save_figure(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (:func:`atomic_path`) and close it.

    ``savefig_kwargs`` go to ``fig.savefig`` (default ``dpi=110, bbox_inches="tight"``).
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    kwargs = {"dpi": 110, "bbox_inches": "tight", **savefig_kwargs}
    try:
        with atomic_path(path, suffix=f".tmp{path.suffix}") as tmp:
            fig.savefig(tmp, **kwargs)
    finally:
        plt.close(fig)
    return path


def remove_temporaries(folder: str | Path) -> int:
    """Remove the temporary files of writes that a killed process left in ``folder`` (not
    below it); return how many. Only for a folder this process holds (:mod:`mmint.runlock`)."""
    n = 0
    for tmp in Path(folder).glob(".*.tmp*"):
        if tmp.is_file():
            with suppress(OSError):
                tmp.unlink()
                n += 1
    return n


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any, *, make_parents: bool = True) -> None:
    """Atomically write JSON (numpy scalars converted, NaN/inf written as null)."""
    text = json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n"
    atomic_write(path, text, make_parents=make_parents)


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())
