"""A quiet terminal: mmint's own lines and errors on the console, everything in the log file.

Third-party libraries talk a lot on a plain fit (device banners, tips, deprecation warnings,
JIT notes). With ``verbose=false`` (the default) the console handlers that Hydra installs drop
every record below ERROR that does not come from mmint; the job's log file keeps them all,
Python warnings included.
"""

from __future__ import annotations

import logging

#: records of this logger carry tracebacks for the log file only
TRACEBACK_LOGGER = "mmint.traceback"


class _QuietFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == TRACEBACK_LOGGER:
            return False
        return record.name.split(".")[0] == "mmint" or record.levelno >= logging.ERROR


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [
        h
        for h in logger.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def setup_console(verbose: bool = False) -> None:
    """Route Python warnings to logging and, unless ``verbose``, quiet the console handlers.

    Call it once logging is configured (Hydra does that before running the command).
    """
    # these install console handlers of their own on import: import them first
    import anndata  # noqa: F401
    import lightning  # noqa: F401

    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in _console_handlers(root):
        for f in [f for f in handler.filters if isinstance(f, _QuietFilter)]:
            handler.removeFilter(f)
        if not verbose:
            handler.addFilter(_QuietFilter())
    if verbose or not root.handlers:
        return
    # libraries that print through console handlers of their own (Lightning, anndata): send
    # their records through the root handlers instead (the log file, and the filtered console)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and not name.startswith("mmint"):
            handlers = _console_handlers(logger)
            for handler in handlers:
                logger.removeHandler(handler)
            if handlers:
                logger.propagate = True
