"""The ``mmint`` command: ``mmint <validate|fit|benchmark|explain|predict> [hydra overrides]``
and ``mmint report <results.csv> ... out=<dir>`` (no Hydra: it composes only the runs' data).

Hydra composes the config here and only here; the library takes plain dicts. Bad input
exits 2 with one line ``error: <what> (<where>) - <how to fix>`` on stderr, no traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable
from typing import Any

from mmint.errors import InputError

COMMANDS = ("validate", "fit", "benchmark", "explain", "predict", "report")
USAGE = """usage: mmint <command> [key=value ...]

commands:
  validate   load a dataset through the training code path and report whether it is usable
  fit        fit one model on one dataset and write a run directory
  benchmark  run a suite of fits and write results.csv, report.md and plots
  report     leaderboard and report.md from one or more results.csv (no fitting):
             mmint report <results.csv> [<results.csv> ...] out=<dir>
  explain    SHAP relevance analysis of a run directory
  predict    apply a run to new cells (its fitted transforms and model): latents, groups,
             cross-modal predictions

options (Hydra's, anywhere on the line):
  -m, --multirun        sweep: seed=0,1,2 model=multivi,cvqvae (hydra/launcher=submitit_local
                        or hydra/launcher=slurm runs the fits as separate jobs)
  --cfg job|hydra|all   print the composed config and exit
  verbose=true          show third-party messages and tracebacks on the terminal too

examples:
  mmint validate data=snareseq_mouse_cortex_chen2019
  mmint validate data=custom 'data.paths={rna: a.h5ad, atac: b.h5ad}' 'data.kinds={rna: counts, atac: binary}'
  mmint fit model=unitednet data=synthetic seed=1 logger=csv
  mmint benchmark suite=quick
  mmint report runs/benchmark/real_comparators/results.csv runs/benchmark/real/results.csv out=board
  mmint predict run=runs/unitednet/synthetic/<time> data=custom 'data.paths={rna: new_rna.h5ad, atac: new_atac.h5ad}' 'data.kinds={rna: counts, atac: binary}'
"""


def fail(err: InputError | str, code: int = 2) -> None:
    """Print one ``error:`` line to stderr and exit."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(code)


def _config_dir() -> str:
    from mmint.config import config_dir

    return str(config_dir())


def _check_group_choices(overrides: list[str]) -> None:
    """Unknown ``data=``/``model=`` names get the contracts' one-line error, not Hydra's."""
    from mmint.data.registry import dataset_config

    for item in overrides:
        key, _, value = item.partition("=")
        if key in ("data", "+data") and value and "," not in value:
            dataset_config(value)  # raises InputError for an unknown name
        if key in ("suite", "+suite") and value:
            from mmint.benchmark.grid import check_suite_name

            check_suite_name(value)
        if key == "model" and value and "," not in value:
            path = os.path.join(_config_dir(), "model", f"{value}.yaml")
            if not os.path.exists(path):
                known = sorted(p[:-5] for p in os.listdir(os.path.join(_config_dir(), "model")))
                raise InputError(
                    f"unknown model '{value}'", "model=", f"use one of: {', '.join(known)}"
                )


def compose(command: str, overrides: list[str]) -> Any:
    """Compose the config with Hydra (no run directory), as tests and ``validate`` do.

    Raises
    ------
    mmint.errors.InputError
        For an override Hydra refuses (a key that does not exist, bad syntax, an unknown
        config choice), with the one line of :func:`override_error`.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    with initialize_config_dir(config_dir=_config_dir(), version_base="1.3"):
        try:
            return hydra_compose("config", overrides=[f"command={command}", *overrides])
        except HydraException as err:
            raise override_error(err, command) from None


_NO_KEY = re.compile(r"Could not override '([^']+)'")
_FULL_KEY = re.compile(r"full_key: (\S+)")


def override_error(err: Exception, command: str = "fit") -> InputError:
    """Hydra's refusal of an override as one :class:`InputError` line."""
    text = str(err)
    if (m := _NO_KEY.search(text)) and "To append to your config" in text:
        key = m.group(1)
        inner = _FULL_KEY.search(str(err.__cause__ or ""))
        if inner and inner.group(1) != key and inner.group(1).startswith(f"{key}."):
            # a dict value (e.g. suite.variants={new: {...}}) that brings keys the config
            # lacks: Hydra merges into the existing dict, and refuses new keys without '+'
            return InputError(
                f"'{key}' has no key '{inner.group(1).removeprefix(key + '.')}'",
                f"{key}=",
                f"to add keys write +{key}=<value> (merged into the current value); to "
                f"replace the whole value write ~{key} +{key}=<value>",
            )
        return InputError(
            f"unknown config key '{key}'",
            f"{key}=",
            f"check its spelling (mmint {command} --cfg job lists every key), or add a new "
            f"key with +{key}=<value>",
        )
    first = " ".join(text.strip().splitlines()[0].split()) if text.strip() else type(err).__name__
    return InputError(
        first, "overrides", f"fix the override (mmint {command} --cfg job shows the config)"
    )


def check_overrides(command: str, argv: list[str]) -> None:
    """Compose once before Hydra runs the command, so that an override Hydra refuses is the
    one-line error (exit 2) of :func:`override_error` rather than Hydra's text (exit 1).
    Sweeps (``-m``), ``--cfg``/``--info`` and ``hydra.*`` overrides are left to Hydra."""
    flags, overrides = split_hydra_flags(argv)
    if flags:
        return
    compose(command, [o for o in overrides if not o.lstrip("+~").startswith("hydra")])


def compose_run(overrides: list[str]) -> dict[str, Any]:
    """A fit's config as a resolved plain dict (root config + ``overrides``), exactly as
    ``mmint fit <overrides>`` gets it: what the benchmark runner is given to compose its runs.

    Works inside ``hydra.main`` (``mmint benchmark``) and outside it (library, tests).
    """
    from hydra.core.global_hydra import GlobalHydra

    from mmint.config import plain

    if GlobalHydra.instance().is_initialized():
        from hydra import compose as hydra_compose

        cfg = hydra_compose("config", overrides=overrides)
    else:
        cfg = compose("fit", overrides)
    out = plain(cfg)
    out.pop("hydra", None)
    return out


def validate(cfg: Any) -> str:
    """Load the dataset and build the split exactly as ``fit`` does; return the summary."""
    from mmint.config import plain
    from mmint.fit import build_datamodule

    cfg = plain(cfg)
    dm = build_datamodule(cfg, batch_size=int(cfg["model"].get("batch_size", 128)))
    sizes = ", ".join(f"{k}={len(v)}" for k, v in dm.split.items())
    return f"dataset: {cfg['data']['name']}\n{dm.data.summary()}\nsplit ({dm.split_config.get('kind')}): {sizes}"


def _fit_task(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig

    from mmint.fit import run_fit

    run_dir = HydraConfig.get().runtime.output_dir
    metrics = run_fit(cfg, run_dir, announce=lambda line: print(line, flush=True))
    keys = ("ari", "nmi", "ari_kmeans", "foscttm", "fit_seconds")
    summary = ", ".join(f"{k}={metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), float))
    print(f"results: {run_dir}\n{summary}")
    for line in metrics.get("warnings") or []:
        print(f"warning: {line}")


#: Hydra's command-line flags, with whether each takes a value ("?": an optional one)
_HYDRA_FLAGS = {
    "-m": False,
    "--multirun": False,
    "-r": False,
    "--run": False,
    "--resolve": False,
    "-h": False,
    "--help": False,
    "-hh": False,
    "--hydra-help": False,
    "--version": False,
    "-c": True,
    "--cfg": True,
    "-p": True,
    "--package": True,
    "-cp": True,
    "--config-path": True,
    "-cn": True,
    "--config-name": True,
    "-cd": True,
    "--config-dir": True,
    "--experimental-rerun": True,
    "-sc": True,
    "--shell-completion": True,
    "-i": "?",
    "--info": "?",
}
_INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def split_hydra_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """``(flags, overrides)``: Hydra's flags (with their values) wherever they stand on the
    line, and the overrides, so that ``mmint fit -m seed=0,1`` and ``mmint fit seed=0,1 -m``
    both work (Hydra's parser takes flags only before the overrides)."""
    flags: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        takes = _HYDRA_FLAGS.get(name)
        if takes is None:
            rest.append(arg)
        elif takes is True and "=" not in arg and i + 1 < len(args):
            flags += [arg, args[i + 1]]
            i += 1
        elif takes == "?" and i + 1 < len(args) and args[i + 1] in _INFO_CHOICES:
            flags += [arg, args[i + 1]]
            i += 1
        else:
            flags.append(arg)
        i += 1
    return flags, rest


def _hydra_main(task: Callable[[Any], None], command: str, argv: list[str]) -> None:
    import hydra

    flags, overrides = split_hydra_flags(argv)
    modes = [f for f in flags if f in ("-m", "--multirun", "-c", "--cfg", "-i", "--info")]
    if len({"multirun" if f in ("-m", "--multirun") else f for f in modes}) > 1:
        fail(
            f"{' and '.join(modes)} cannot be combined (mmint {command}) - --cfg/--info show "
            "the config of one run: leave out -m"
        )
    sys.argv = [f"mmint {command}", *flags, f"command={command}", *overrides]
    hydra.main(config_path=_config_dir(), config_name="config", version_base="1.3")(
        _guarded(task)
    )()


def _log_file() -> str | None:
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def _guarded(task: Callable[[Any], None]) -> Callable[[Any], None]:
    """Run the command with a quiet console; every failure becomes one ``error:`` line
    (exit 2 for bad input, 1 otherwise) and the traceback goes to the log file."""

    def run(cfg: Any) -> None:
        import logging

        from mmint.callbacks.divergence import TrainingDiverged
        from mmint.console import TRACEBACK_LOGGER, setup_console
        from mmint.io import WriteFailed

        verbose = bool(cfg.get("verbose", False))
        setup_console(verbose)
        try:
            task(cfg)
        except KeyboardInterrupt:
            args = [a for a in sys.argv[1:] if not a.startswith("command=")]
            if not any(a.startswith("hydra.run.dir=") for a in args):
                from hydra.core.hydra_config import HydraConfig

                args.append(f"hydra.run.dir={HydraConfig.get().runtime.output_dir}")
            print(
                f"interrupted - finished results are kept; rerun the same command to resume: "
                f"{sys.argv[0]} {shlex.join(args)}",
                file=sys.stderr,
            )
            raise SystemExit(130) from None
        except InputError as err:
            fail(err)
        except (TrainingDiverged, WriteFailed) as err:
            fail(err, code=1)
        except Exception as err:
            if verbose:
                raise
            logging.getLogger(TRACEBACK_LOGGER).exception("the command failed")
            log = _log_file()
            text = " ".join(str(err).split())
            fail(
                f"{type(err).__name__}: {text}"
                + (f" (traceback in {log}; verbose=true shows it here)" if log else ""),
                code=1,
            )

    return run


def _benchmark_task(cfg: Any) -> None:
    from mmint.benchmark.cli import main as benchmark

    benchmark(cfg, compose=compose_run)


def _explain_task(cfg: Any) -> None:
    from mmint.explain.cli import main as explain

    explain(cfg)


def _predict_task(cfg: Any) -> None:
    from mmint.predict import main as predict

    predict(cfg)


#: what each command runs under ``hydra.main`` (``validate`` composes without it)
TASKS: dict[str, Callable[[Any], None]] = {
    "fit": _fit_task,
    "benchmark": _benchmark_task,
    "explain": _explain_task,
    "predict": _predict_task,
}


def _report(args: list[str]) -> None:
    """``mmint report``: bad input exits 2 with one line, any other failure 1."""
    import logging

    from mmint.console import setup_console

    verbose = any(a.lower() == "verbose=true" for a in args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    setup_console(verbose)
    args = [a for a in args if a.lower() not in ("verbose=true", "verbose=false")]
    try:
        from mmint.benchmark.report_cli import main as report

        report(args, compose_run)
    except InputError as err:
        fail(err)
    except Exception as err:
        if verbose:
            raise
        fail(
            f"{type(err).__name__}: {' '.join(str(err).split())} (verbose=true shows the traceback)",
            1,
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mmint`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        fail(f"unknown command '{command}' (mmint {command}) - use one of: {', '.join(COMMANDS)}")
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    if not any(a.lower() == "verbose=true" for a in rest):
        # torch's C++ warnings (e.g. DDP's reducer) bypass Python logging: only errors
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    if command == "report":
        _report(rest)
        return
    _, overrides = split_hydra_flags(rest)
    try:
        _config_dir()  # an install without its config tree: one error line, not Hydra's
        _check_group_choices(overrides)
        if command == "benchmark" and not any(
            a.split("=")[0] in ("suite", "+suite") for a in overrides
        ):
            suites = sorted(p[:-5] for p in os.listdir(os.path.join(_config_dir(), "suite")))
            raise InputError(
                "no suite given",
                "mmint benchmark",
                f"pass suite=<name>, one of: {', '.join(suites)}",
            )
        if command == "predict" and not any(
            a.split("=")[0] in ("data", "+data") for a in overrides
        ):
            raise InputError(
                "no data given",
                "mmint predict",
                "pass data=<dataset> or data=custom 'data.paths={...}' 'data.kinds={...}'",
            )
        if command == "validate":
            print(validate(compose(command, overrides)))
            return
        check_overrides(command, rest)
    except InputError as err:
        fail(err)
    task = TASKS[command]
    if command in ("explain", "predict") and not any(a.startswith("hydra.run.dir=") for a in rest):
        # these write into the given run directory: no timestamped Hydra folder of their own
        rest = ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout", *rest]
    _hydra_main(task, command, rest)


if __name__ == "__main__":
    main()
