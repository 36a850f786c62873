"""``python -m nigt_hpc`` is the same entry point as the ``nigt-hpc`` command."""

from .cli import main

if __name__ == "__main__":
    main()
