"""Warnings about the user's request, shown at the user's own line.

Generation warns from deep inside its steps (a value outside the training range, a combination
never seen in training); a fixed ``stacklevel`` would have to count the frames between each
warning and the user's call, and change whenever a step moves. The frames are counted instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep
# torch's decorators (``torch.inference_mode`` on ``generate``) add frames of their own
_DECORATORS = ("torch/utils/_contextlib.py", "contextlib.py")


def _is_ours(filename: str) -> bool:
    """Whether a frame's file is this package's or a decorator's around its methods."""
    path = filename.replace("\\", "/")
    return filename.startswith(_PACKAGE) or path.endswith(_DECORATORS)


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with ``message``, attributed to the first frame outside this package: the user's
    line that asked for what the warning is about."""
    # stacklevel 2 is the caller of this function, sys._getframe(1)
    frame, level = sys._getframe(1), 2
    while frame is not None and _is_ours(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
