"""``python -m dovit``: list the commands, or run one (``python -m dovit train ...``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
