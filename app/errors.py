"""What the app says when it refuses: ``user_error`` (a gr.Error for the sender, one line in the log) and
``user_number`` (a user or API value that must be a real number)."""
from __future__ import annotations

import logging
import numbers
import sys
from collections.abc import Callable

import gradio as gr

logger = logging.getLogger("app.studio")


def log_user_errors_to_stderr() -> None:
    """One line per refused request on stderr ("time app.studio refused: message"), once per process."""
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # one line, whatever the root logger does


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's last resort does)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def user_error(message: str) -> gr.Error:
    """A gr.Error for whoever sent the request: shown to them, and one line (no traceback) in the log."""
    logger.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def user_number(value: object, check: Callable[[float], float], expected: str) -> float:
    """A user or API value that must be a real number (not a bool or a string) that ``check`` accepts
    (its ValueError's message is shown), or a gr.Error; ``expected`` says what was expected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise user_error(f"{expected}, got {value!r}")
    try:
        return check(value)
    except ValueError as error:
        raise user_error(str(error)) from None
