"""Checks on where the package writes, light enough for the command line to run first."""

from __future__ import annotations

import os
from pathlib import Path


def check_save_target(
    dir_path: Path, overwrite: bool, overwrite_hint: str = "pass `overwrite=True`"
) -> None:
    """A ValueError unless a model can be saved in ``dir_path``: a new folder, or with
    ``overwrite`` an existing one, where this user may write.

    ``overwrite_hint`` says how to allow replacing a saved model (the command line has its own
    flag), so that a long training can check its destination before it starts.
    """
    if dir_path.exists() and not dir_path.is_dir():
        raise ValueError(f"{str(dir_path)!r} is a file; give a folder to save the model in.")
    if dir_path.exists() and not overwrite:
        raise ValueError(
            f"{str(dir_path)!r} already exists; {overwrite_hint} to replace the model saved "
            "there, or choose another folder."
        )
    # the save writes in a staging folder beside dir_path (in its parent, created if needed)
    # and then moves it: the nearest existing folder above dir_path must be writable
    existing = next(p for p in dir_path.absolute().parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"Cannot write in {str(existing)!r}; choose another folder to save in.")
