"""The one exception type for mistakes a user can make (bad spec, missing data, wrong checkpoint).

The CLIs print a ``UserError`` as a single line and exit with code 2; every other exception is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix: printed as one line, exit code 2."""


class SpecError(UserError):
    """An invalid recipe or search spec."""


class DataError(UserError):
    """Missing, malformed or unusable data."""


class CheckpointError(UserError):
    """A weights file that cannot be read or does not fit the model."""


class StorageError(UserError):
    """An experiment storage location that cannot be used."""
