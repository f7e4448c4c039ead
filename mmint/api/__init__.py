"""The Python API behind ``mmint.fit``, ``mmint.Run``, ``mmint.load_run``, ``mmint.validate``
and ``mmint.benchmark``: the command line's configs and code paths, called from Python."""
