"""``python -m rtcheck``: the same as the ``rtcheck`` command."""

from rtcheck.cli import main

if __name__ == "__main__":
    main()
