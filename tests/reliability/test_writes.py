"""Failed writes: no space, a read-only folder, a folder removed meanwhile. The command ends
with one ``error:`` line naming the file and the cause, and leaves nothing partial that a
resume would trust."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from benchmark.conftest import tiny_suite

import mmint.io
from mmint.benchmark.grid import expand
from mmint.benchmark.results import read_results
from mmint.benchmark.runner import is_done, run_suite
from mmint.cli import compose, compose_run
from mmint.config import plain
from mmint.fit import run_fit
from mmint.io import WriteFailed, atomic_write, write_json

from .helpers import TINY

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp*"))


def _fail_writes_to(monkeypatch, name: str, after: int = 0) -> list[str]:
    """Make the text writer raise ENOSPC, after writing half of the text, for files called
    ``name`` (the first ``after`` such writes succeed); return the log of attempts."""
    real = mmint.io._write_text
    seen: list[str] = []

    def write(tmp: Path, text: str) -> None:
        if tmp.name.startswith(f".{name}.") and len(seen) >= after:
            seen.append(tmp.name)
            tmp.write_text(text[: len(text) // 2])  # a partial file, as a full disk leaves
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if tmp.name.startswith(f".{name}."):
            seen.append(tmp.name)
        real(tmp, text)

    monkeypatch.setattr("mmint.io._write_text", write)
    return seen


def _tiny_cfg(tmp_path: Path, *extra: str) -> dict:
    return plain(compose("fit", ["model=pca", *TINY, *extra]))


def test_atomic_write_that_fails_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    _fail_writes_to(monkeypatch, "metrics.json")
    with pytest.raises(WriteFailed) as info:
        write_json(path, {"a": 2, "b": list(range(100))})
    line = str(info.value)
    assert str(path) in line and "no space left" in line and "(ENOSPC)" in line
    assert "\n" not in line and "rerun the same command" in line
    assert json.loads(path.read_text()) == {"a": 1}
    assert _temporaries(tmp_path) == []


def test_write_failed_survives_pickling():
    """A worker process's failure reaches the suite whole (n_jobs > 1)."""
    import pickle

    err = WriteFailed.of("/x/results.csv", ENOSPC)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, WriteFailed) and str(back) == str(err)


def test_no_space_for_metrics_json(tmp_path, monkeypatch):
    """The fit's own metrics.json cannot be written: WriteFailed names it, no metrics.json
    (neither partial nor a failed-status one), so the run is not done for a resume."""
    cfg = _tiny_cfg(tmp_path)
    attempts = _fail_writes_to(monkeypatch, "metrics.json")
    with pytest.raises(WriteFailed, match="metrics.json: no space left"):
        run_fit(cfg, tmp_path / "run")
    assert len(attempts) == 2  # the result, then the failed-status record: both refused
    assert not (tmp_path / "run/metrics.json").exists()
    assert _temporaries(tmp_path) == []
    assert not is_done(tmp_path / "run", cfg)
    monkeypatch.undo()
    assert run_fit(cfg, tmp_path / "run")["status"] == "ok"  # the rerun finishes it
    assert is_done(tmp_path / "run", cfg)


def test_no_space_for_outputs_h5mu(tmp_path, monkeypatch):
    """outputs.h5mu fails half-written: no outputs.h5mu, no temporary file, metrics.json
    records the failure (status failed, the one line), and the rerun redoes the run."""
    import mudata

    def full_disk(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    cfg = _tiny_cfg(tmp_path)
    run = tmp_path / "run"
    monkeypatch.setattr(mudata.MuData, "write", full_disk)
    with pytest.raises(WriteFailed) as info:
        run_fit(cfg, run)
    assert f"could not write {run / 'outputs.h5mu'}: no space left" in str(info.value)
    assert not (run / "outputs.h5mu").exists() and _temporaries(run) == []
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "failed" and m["error"] == f"WriteFailed: {info.value}"
    assert not is_done(run, cfg)


def test_fit_command_prints_one_error_line(tmp_path, monkeypatch, capsys):
    """`mmint fit` with a full disk: exit 1 and one `error:` line naming the file."""
    from mmint.cli import main

    _fail_writes_to(monkeypatch, "split.json")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["fit", "model=pca", *TINY, "hydra.run.dir=run"])
    assert info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: could not write {tmp_path}/run/split.json: no space left")


def _read_only(folder: Path, monkeypatch) -> None:
    """Make ``folder`` read-only; as root (where the mode does not stop writes) refuse the
    creation of files in it the way the kernel would."""
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except PermissionError:
        return
    probe.unlink()
    real = mmint.io.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr("mmint.io.tempfile.mkstemp", mkstemp)


def test_read_only_run_folder(tmp_path, monkeypatch):
    """The run folder turns read-only before the outputs are written: one WriteFailed line
    naming outputs.h5mu, and no result in the folder."""
    import mmint.fit

    cfg = _tiny_cfg(tmp_path)
    run = tmp_path / "run"
    real = mmint.fit.write_outputs

    def read_only_then_write(model, dm, folder, cells):
        _read_only(Path(folder), monkeypatch)
        return real(model, dm, folder, cells)

    monkeypatch.setattr("mmint.fit.write_outputs", read_only_then_write)
    try:
        with pytest.raises(WriteFailed, match=r"outputs.h5mu: permission denied .*\(EACCES\)"):
            run_fit(cfg, run)
    finally:
        run.chmod(0o755)
    assert not (run / "outputs.h5mu").exists() and not (run / "metrics.json").exists()
    assert _temporaries(run) == []


def test_run_folder_removed_while_fitting(tmp_path, monkeypatch):
    """The run folder vanishes before the outputs are written: WriteFailed says so, and the
    folder is not recreated holding a lone metrics.json."""
    import mmint.fit

    cfg = _tiny_cfg(tmp_path)
    run = tmp_path / "run"
    real = mmint.fit.write_outputs

    def removed_then_write(model, dm, folder, cells):
        shutil.rmtree(folder)
        return real(model, dm, folder, cells)

    monkeypatch.setattr("mmint.fit.write_outputs", removed_then_write)
    with pytest.raises(WriteFailed, match="its folder no longer exists"):
        run_fit(cfg, run)
    assert not run.exists()


def test_suite_stops_when_results_csv_cannot_be_written(tmp_path, monkeypatch, fake_fit):
    """results.csv fails on its 2nd write: the suite ends with WriteFailed naming it; the
    file on disk is the previous whole table; the rerun resumes (no run fitted twice)."""
    suite = tiny_suite(floor=[])
    attempts = _fail_writes_to(monkeypatch, "results.csv", after=2)
    with pytest.raises(WriteFailed, match="results.csv: no space left"):
        run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    assert len(attempts) == 3 and _temporaries(tmp_path) == []
    assert len(read_results(tmp_path / "results.csv")) == 1  # the table after the 1st run
    fitted = list(fake_fit)
    monkeypatch.undo()
    monkeypatch.setattr("mmint.fit.run_fit", _fake(fake_fit))
    done = run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    assert done.counts["cached"] == len(fitted) and len(fake_fit) == 3
    assert len(read_results(tmp_path / "results.csv")) == 3


def _fake(calls: list[str]):
    from benchmark.conftest import fake_metrics

    def run_fit(cfg, run_dir):
        calls.append(Path(run_dir).name)
        write_json(Path(run_dir) / "metrics.json", fake_metrics(cfg))
        return {}

    return run_fit


def test_suite_stops_when_a_run_cannot_write(tmp_path, monkeypatch):
    """A run's write failure is not a failed run among others: the suite stops with it."""
    suite = tiny_suite(floor=[])
    runs = expand(suite, ["logger=csv"])
    calls: list[str] = []
    ok = _fake(calls)

    def run_fit(cfg, run_dir):
        if Path(run_dir).name == runs[1].name:
            raise WriteFailed.of(Path(run_dir) / "outputs.h5mu", ENOSPC)
        return ok(cfg, run_dir)

    monkeypatch.setattr("mmint.fit.run_fit", run_fit)
    with pytest.raises(WriteFailed, match="outputs.h5mu"):
        run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    table = read_results(tmp_path / "results.csv")
    assert list(table["seed"]) == [0] and calls == [runs[0].name]
    assert not (tmp_path / "runs" / runs[1].name / "failed.json").exists()


def test_atomic_write_never_creates_a_vanished_run_folder(tmp_path):
    with pytest.raises(WriteFailed, match="its folder no longer exists"):
        atomic_write(tmp_path / "gone" / "metrics.json", "{}", make_parents=False)
    assert not (tmp_path / "gone").exists()
