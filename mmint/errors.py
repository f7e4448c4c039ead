"""The one exception type for bad user input.

The command line turns it into one line ``error: <what> (<where>) - <how to fix>`` on stderr
and exit code 2, as ``contracts.md`` asks.
"""


class InputError(ValueError):
    """Bad input data or configuration, with what is wrong, where, and how to fix it.

    Parameters
    ----------
    what
        What is wrong, e.g. ``"3 cells have NaN values"``.
    where
        Which file, modality, column or cells (empty when the message names it already).
    fix
        What the user should do about it.
    """

    def __init__(self, what: str, where: str, fix: str) -> None:
        self.what, self.where, self.fix = what, where, fix
        super().__init__(f"{what} ({where}) - {fix}" if where else f"{what} - {fix}")
