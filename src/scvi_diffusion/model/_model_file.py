"""Model files that load without running code, written atomically.

A saved model is scvi-tools' layout (``model.pt`` with the keys ``model_state_dict``,
``var_names`` and ``attr_dict``, and optionally ``adata.h5ad``), but ``model.pt`` holds only
tensors and plain Python values (dicts, lists, tuples, strings, numbers, booleans, None), so
``torch.load(weights_only=True)`` reads it with torch's restricted unpickler and no allowlisted
class. NumPy arrays and pandas DataFrames of the model's attributes (registry, training history)
are stored as tagged plain values, and a SHA-256 checksum of the weights and attributes catches
corrupted bytes that torch's zip reader does not.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._paths import check_save_target
from .._scvi_internals import SAVE_KEYS

FORMAT_KEY = "scvi_diffusion_format"
FORMAT_NAME = "scvi-diffusion"
FORMAT_VERSION = 1
_ARRAY_TAG = "__ndarray__"
_FRAME_TAG = "__dataframe__"
_SCALARS = (str, int, float, bool, type(None))
# how torch's restricted unpickler names a class or function it refused to import
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class ModelFileError(ValueError):
    """A model file that cannot be loaded: missing, corrupted, unsafe or not ScDiffusion's.

    Raised by :meth:`ScDiffusion.load <scvi_diffusion.ScDiffusion.load>` and
    :meth:`~scvi_diffusion.ScDiffusion.load_registry` (a missing ``model.pt`` raises
    :class:`FileNotFoundError` instead) when ``model.pt``

    - holds pickled Python objects, which could run code when loaded: it is refused. A model
      saved by another scvi-tools class must be loaded with that class; never load a file you
      do not trust with ``torch.load(weights_only=False)``;
    - is truncated or corrupted (it cannot be read, or its contents do not match the checksum
      written with it): save the model again, or copy the file again if it was transferred;
    - was not written by scvi-diffusion, holds another model class, or was written by a newer
      scvi-diffusion: load it with its own class, or upgrade scvi-diffusion;
    - holds weights that do not fit the model its parameters describe (another version of
      scvi-diffusion).

    The message names the file and says which case it is. A subclass of :class:`ValueError`,
    so ``except ValueError`` catches it too.

    See Also
    --------
    scvi_diffusion.ScDiffusion.save : Writes model files that load without running code.

    Examples
    --------
    Catch it to tell an unusable model file from other errors:

    >>> import scvi_diffusion
    >>> try:  # doctest: +SKIP
    ...     model = scvi_diffusion.ScDiffusion.load("pbmc_model/", adata)
    ... except scvi_diffusion.ModelFileError as error:
    ...     print(f"Cannot use the saved model, train it again: {error}")

    A damaged file, for instance one left empty by an interrupted copy, is refused with the
    reason:

    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = (Path(folder) / "model.pt").write_bytes(b"")
    ...     try:
    ...         scvi_diffusion.ScDiffusion.load(folder)
    ...     except scvi_diffusion.ModelFileError as error:
    ...         print(error)  # doctest: +ELLIPSIS
    '...model.pt' cannot be read: it is truncated or corrupted, ... Save the model again.
    """


def to_plain(value, where: str = "attribute"):
    """``value`` with NumPy arrays, NumPy scalars and DataFrames turned into tagged plain values.

    Raises a TypeError naming ``where`` for anything else that is not a tensor or a plain value,
    so a model is never saved in a form that cannot be loaded safely.
    """
    if isinstance(value, _SCALARS) or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        values = [to_plain(v, where) for v in value.ravel().tolist()]
        return {_ARRAY_TAG: value.dtype.str, "shape": list(value.shape), "values": values}
    if isinstance(value, pd.DataFrame):
        return {
            _FRAME_TAG: True,
            "index": to_plain(value.index.to_numpy(), where),
            "index_name": to_plain(value.index.name, where),
            "columns": [to_plain(c, where) for c in value.columns],
            "data": [to_plain(value[c].to_numpy(), where) for c in value.columns],
        }
    if isinstance(value, Mapping):
        return {to_plain(k, where): to_plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_plain(v, where) for v in value)
    if isinstance(value, list):
        return [to_plain(v, where) for v in value]
    raise TypeError(
        f"Cannot save {where}: values of type {type(value).__name__} cannot be stored in a model "
        "file that loads safely (only tensors, NumPy arrays, DataFrames and plain values)."
    )


def from_plain(value):
    """Inverse of :func:`to_plain`."""
    if isinstance(value, dict):
        if _ARRAY_TAG in value:
            array = np.array(value["values"], dtype=np.dtype(value[_ARRAY_TAG]))
            return array.reshape(value["shape"])
        if _FRAME_TAG in value:
            columns = [from_plain(c) for c in value["columns"]]
            data = {c: from_plain(d) for c, d in zip(columns, value["data"], strict=True)}
            index = pd.Index(from_plain(value["index"]), name=value["index_name"])
            return pd.DataFrame(data, index=index, columns=columns)
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_plain(v) for v in value)
    return value


def _checksum(state_dict: Mapping[str, torch.Tensor], var_names, attr_dict) -> str:
    digest = hashlib.sha256()
    for key, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    # insertion order survives the round trip, so the repr is stable
    digest.update(repr(var_names).encode())
    digest.update(repr(attr_dict).encode())
    return digest.hexdigest()


def write_model_file(path: Path, state_dict, var_names, attr_dict, **save_kwargs) -> None:
    """Write ``model.pt`` with plain values only, flushed to disk before returning."""
    state_dict = {k: v.detach().cpu() for k, v in state_dict.items()}
    var_names = to_plain(np.asarray(var_names), "var_names")
    attr_dict = {k: to_plain(v, k) for k, v in attr_dict.items()}
    payload = {
        SAVE_KEYS.MODEL_STATE_DICT_KEY: state_dict,
        SAVE_KEYS.VAR_NAMES_KEY: var_names,
        SAVE_KEYS.ATTR_DICT_KEY: attr_dict,
        FORMAT_KEY: {
            "name": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "checksum": _checksum(state_dict, var_names, attr_dict),
        },
    }
    with open(path, "wb") as file:
        torch.save(payload, file, **save_kwargs)
        file.flush()
        os.fsync(file.fileno())


def _unsafe_globals(path: Path) -> list[str]:
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    try:
        return list(finder(path)) if finder is not None else []
    except Exception:  # only enriches the message
        return []


def read_model_file(path: Path) -> tuple[dict, np.ndarray, dict]:
    """Read ``model.pt`` without running code; return ``(state_dict, var_names, attr_dict)``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        The file holds pickled Python objects (which could run code), is truncated or
        corrupted, or was not written by scvi-diffusion.
    """
    if not path.is_file():
        folder = path.parent
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
        where = f"the folder holds {found}" if found is not None else "the folder does not exist"
        raise FileNotFoundError(f"No saved model at {str(path)!r}: {where}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types on bad bytes
        blocked = _GLOBAL.findall(str(error)) if isinstance(error, pickle.UnpicklingError) else []
        if blocked:
            named = ", ".join(dict.fromkeys([*_unsafe_globals(path), *blocked]))
            raise ModelFileError(
                f"Refusing to load {str(path)!r}: it holds pickled Python objects ({named}) "
                "that could run code when loaded. ScDiffusion model files hold only tensors and "
                "plain values. A model saved by another scvi-tools class (or another program) "
                "must be loaded with that class; never load a file you do not trust with "
                "torch.load(weights_only=False)."
            ) from None
        first_line = next((line for line in str(error).splitlines() if line.strip()), "")
        raise ModelFileError(
            f"{str(path)!r} cannot be read: it is truncated or corrupted, or not a model file "
            f"({type(error).__name__}: {first_line[:100]}). Save the model again."
        ) from None
    info = payload.get(FORMAT_KEY) if isinstance(payload, dict) else None
    if not isinstance(info, dict) or info.get("name") != FORMAT_NAME:
        raise ModelFileError(
            f"{str(path)!r} is not a scvi-diffusion model file (it has no "
            f"{FORMAT_KEY!r} record); it may have been saved by another scvi-tools model, which "
            "must be loaded with its own class."
        )
    if info.get("version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} was written by a newer scvi-diffusion (file format "
            f"{info.get('version')}; this version reads up to {FORMAT_VERSION}). Upgrade "
            "scvi-diffusion to load it."
        )
    state_dict = payload[SAVE_KEYS.MODEL_STATE_DICT_KEY]
    var_names = payload[SAVE_KEYS.VAR_NAMES_KEY]
    attr_dict = payload[SAVE_KEYS.ATTR_DICT_KEY]
    if _checksum(state_dict, var_names, attr_dict) != info.get("checksum"):
        raise ModelFileError(
            f"{str(path)!r} is corrupted: its contents do not match the checksum written with "
            "it. Save the model again, or copy the file again if it was transferred."
        )
    return state_dict, from_plain(var_names), from_plain(attr_dict)


def _staging_folder(parent: Path, name: str) -> Path:
    """A new, empty folder in ``parent`` to write the model ``name`` into before it moves.

    Made with :func:`os.mkdir` rather than :func:`tempfile.mkdtemp`: mkdtemp makes it
    owner-only (``drwx------``) and the rename keeps that, so colleagues on a shared server could
    not read the saved model. ``os.mkdir`` applies the user's umask (and the parent's default
    ACL) like any folder they make, without reading or changing the process-wide umask.
    """
    for _ in range(100):
        staging = parent / f".{name}.saving-{secrets.token_hex(4)}"
        try:
            staging.mkdir()
        except FileExistsError:  # the name is taken (say, left by a killed save): draw again
            continue
        return staging
    raise FileExistsError(f"Cannot make a staging folder for {name!r} in {str(parent)!r}.")


def save_atomically(dir_path: Path, overwrite: bool, write: Callable[[Path], list[str]]) -> None:
    """Run ``write(staging_folder)`` and move what it wrote into ``dir_path`` only once done.

    ``write`` returns the names of the files it wrote, in the order they should replace those in
    ``dir_path`` (the model file last). A new ``dir_path`` appears in one rename; in an existing
    one (``overwrite=True``) each file is replaced atomically, and its other files are kept. If
    ``write`` fails, nothing in ``dir_path`` has changed and the staging folder is removed. A new
    folder and its files get the permissions the user's umask gives, as with ``os.mkdir`` and
    ``open``.
    """
    check_save_target(dir_path, overwrite)
    parent = dir_path.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_folder(parent, dir_path.name)
    try:
        names = write(staging)
        if not dir_path.exists():
            os.rename(staging, dir_path)
            return
        for name in names:
            os.replace(staging / name, dir_path / name)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
