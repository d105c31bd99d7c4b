"""``python -m pyncette``: the ``pyncette`` command."""

from pyncette.cli import main

if __name__ == "__main__":
    main()
