"""The command line: ``rtcheck`` and its commands.

* :mod:`rtcheck.cli.main`: the application, ``dvh``, ``check``, ``demo``, ``protocols``
  and the ``rtcheck FOLDER`` shortcut; it registers the commands below;
* :mod:`rtcheck.cli.batch`, :mod:`rtcheck.cli.watch`, :mod:`rtcheck.cli.serve`: one
  command family each, free of imports from :mod:`rtcheck.cli.main` so that each runs
  alone (``python -m rtcheck.cli.watch ...``) without loading the others;
* :mod:`rtcheck.cli.options` and :mod:`rtcheck.cli.errors`: what they share (option
  declarations; mapping rtcheck's errors to messages and exit codes).

This package's own module is kept free of imports so that running one command family
loads nothing else.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Run the ``rtcheck`` command line (the console script's entry point).

    Parameters
    ----------
    argv
        Arguments without the program name; ``sys.argv[1:]`` when omitted.
    """
    import os

    # Before NumPy is first imported (see rtcheck.cli.main.main).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from rtcheck.cli.main import main as run

    run(argv)


__all__ = ["main"]
