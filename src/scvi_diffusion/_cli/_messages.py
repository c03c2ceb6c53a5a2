"""Warnings and the package's log records as one plain line each while a command runs
(``scvi-diffusion: warning: ...``), for a terminal or a log file."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings

# the package's log records (for example a classifier trained on demand), shown as one line
PACKAGE_LOGGER = "scvi.diffusion"


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, ``scvi-diffusion: warning: ...``, without the source line that
    Python's default format echoes."""
    print(f"scvi-diffusion: warning: {_one_line(message)}", file=file or sys.stderr)


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"scvi-diffusion: {record.levelname.lower()}: {_one_line(record.getMessage())}"


@contextlib.contextmanager
def _plain_messages():
    """Warnings and the package's log records as one plain line each, for a terminal or a log
    file, for the duration of a command."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    propagate = logger.propagate
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        logger.addHandler(handler)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate
