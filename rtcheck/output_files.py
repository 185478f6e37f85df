"""Writing rtcheck's output files: whole or not at all, and errors that name the folder.

Every report, index and summary of ``batch`` and ``watch`` is written by
:func:`write_text`: into a hidden temporary file beside its target, flushed to the disk,
then renamed over the target, so a reader never sees half a report and a full disk or a
read-only folder leaves neither a half-written report nor the temporary file behind. The
failure is an :class:`rtcheck.errors.InputError` naming the folder and saying what to do
(the commands exit 3), never a traceback. :func:`prepare_folder` makes and probes an output
folder before any work, so a folder that cannot be written is refused at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from rtcheck.errors import InputError

__all__ = ["TEMPORARY", "prepare_folder", "remove_stale_temporaries", "write_error", "write_text"]

#: Name of the temporary file beside ``NAME``: ``.NAME.<pid>.tmp``.
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


def write_error(exc: OSError, folder: Path, what: str) -> InputError:
    """The :class:`InputError` for an output that could not be written into ``folder``.

    Parameters
    ----------
    exc
        The failure.
    folder
        The folder written into (named by the error).
    what
        What was being written, e.g. ``"summary.csv"``.
    """
    if exc.errno in _NO_SPACE:
        advice = "no space left on its device: free space there or choose another output folder"
    elif exc.errno in _NOT_ALLOWED:
        advice = (
            f"the folder cannot be written ({exc.strerror}): choose an output folder you "
            "can write to, or change its permissions"
        )
    else:
        advice = f"{exc.strerror or exc}: check the output folder"
    return InputError(f"cannot write {what}: {advice}", folder)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all.

    The text goes to ``.NAME.<pid>.tmp`` in the same folder, is flushed to the disk
    (``fsync``: a full disk is found there, not later) and renamed over ``path``. On any
    failure the temporary file is removed and ``path`` is left as it was.

    Raises
    ------
    InputError
        Naming the folder of ``path``: no space left, no permission, or another
        operating-system error.
    """
    temporary = _temporary(path)
    try:
        _write_file(temporary, text.encode("utf-8"))
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise write_error(exc, path.parent, path.name) from exc


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and flush it to the disk."""
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def prepare_folder(folder: Path) -> None:
    """Create an output folder (with its parents) and prove it can be written.

    A small probe file is written by :func:`write_text` and removed, so a read-only
    folder, a folder of another user or a full disk are found before any work is done.

    Raises
    ------
    InputError
        Naming the folder, when it cannot be created or written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise InputError("not a folder: give an output folder", folder) from exc
    except OSError as exc:
        raise write_error(exc, folder, "into the output folder") from exc
    probe = folder / f".rtcheck-probe-{os.getpid()}"
    write_text(probe, "rtcheck can write here\n")
    with contextlib.suppress(OSError):
        probe.unlink()


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files of rtcheck runs that were killed before they finished.

    A temporary file ``.NAME.<pid>.tmp`` (see :func:`write_text`) is stale when no process
    ``<pid>`` runs any more; the files of running processes are left alone.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    with contextlib.suppress(OSError):
        for path in folder.rglob(".*.tmp"):
            match = TEMPORARY.match(path.name)
            if match is None or not path.is_file() or _running(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True
