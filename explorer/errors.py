"""The one exception type for mistakes a user can make (bad spec, missing data, wrong checkpoint).

The CLIs print a ``UserError`` as a single line and exit with code 2; every other exception is a
bug and keeps its traceback.
"""

import argparse


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


def error_line(exc: BaseException | str, *, last: bool = False, limit: int = 300) -> str:
    """One line of an exception's text for a ``UserError`` message: the first non-empty line
    (a library's summary), or with ``last`` the last one (a Ray error wraps a traceback and ends
    with the cause). The exception's type name when it has no text."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    return (lines[-1] if last else lines[0])[:limit]


#: The longest error line a CLI prints: a message quoting a huge value (a YAML bomb, a path of
#: thousands of characters) must not flood the terminal or the CI log.
MAX_LINE = 500


def cli_line(message: object, limit: int = MAX_LINE) -> str:
    """``message`` as the one line a CLI prints after ``error: ``.

    Line breaks and other control characters (from a value the user typed, or a library's
    multi-line message) are shown escaped, so the output stays one line. Over ``limit``
    characters the middle is cut: the start names what is at fault, the end says what to do.
    """
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))
    if len(text) <= limit:
        return text
    cut = " [...] "
    tail = limit // 3
    return text[: limit - tail - len(cut)] + cut + text[-tail:]


class OneLineParser(argparse.ArgumentParser):
    """The CLIs' argument parser: a bad option is one ``error:`` line and exit code 2, like
    every other mistake (argparse's own prints the usage block first)."""

    def error(self, message: str):
        self.exit(2, f"error: {cli_line(message)} (see --help)\n")
