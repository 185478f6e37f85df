"""The one small exception hierarchy of rtcheck.

Every message says what is wrong and, where it can, what to do about it. A protocol
violation is a *result*, never an exception; exceptions are for input that cannot be
evaluated, for malformed user text (metrics, protocols) and for missing optional parts.
"""

from __future__ import annotations

from pathlib import Path


class RtcheckError(Exception):
    """Base class of every error rtcheck raises on purpose."""


class InputError(RtcheckError):
    """Input that cannot be evaluated: unreadable, inconsistent or unsupported DICOM.

    Parameters
    ----------
    message
        What is wrong and what to do, without the file name.
    path
        The file (or folder) the problem is in, when there is one.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputErrors(RtcheckError):
    """Several input problems found in one pass, reported together (one line each)."""

    def __init__(self, errors: list[InputError]) -> None:
        if not errors:
            raise ValueError("InputErrors needs at least one error")
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class MetricSyntaxError(RtcheckError, ValueError):
    """A DVH metric string that does not follow the TG-263 grammar rtcheck accepts."""


class MissingExtraError(RtcheckError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, feature: str, extra: str, package: str) -> None:
        self.extra = extra
        super().__init__(
            f"{feature} needs the optional package '{package}': "
            f"install it with  pip install 'rtcheck[{extra}]'"
        )


class EvaluationError(RtcheckError):
    """A metric or rule that cannot be evaluated on the data at hand.

    For example a metric relative to the prescription when no prescription is known.
    """


class UsageError(RtcheckError):
    """A command asked for something that cannot work as given (options that conflict,
    a name that does not exist); the CLI exits with code 2."""


class ProtocolError(RtcheckError):
    """A protocol file that cannot be used, located as ``file:line:column``."""

    def __init__(self, message: str, file: str, line: int, column: int) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.reason = message
        super().__init__(f"{file}:{line}:{column}: {message}")
