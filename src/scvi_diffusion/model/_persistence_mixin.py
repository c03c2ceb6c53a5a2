"""Saving and loading ScDiffusion models safely: files that load without running code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
from scvi.data import AnnDataManager

from .._scvi_internals import (
    MODEL_NAME_KEY,
    SAVE_KEYS,
    SETUP_ARGS_KEY,
    devices_dsp,
    parse_device_args,
)
from .._validation import check_genes
from ._model_file import ModelFileError, read_model_file, save_atomically, write_model_file

if TYPE_CHECKING:
    from ._scdiffusion import ScDiffusion

_DENOISER_FIRST_LEVEL = "diffusion.denoiser.down.0.linear.weight"


class SafeSaveLoadMixin:
    """``save``, ``load``, ``load_registry`` and ``view_setup_args`` with safe model files.

    scvi-tools' own save and load pickle the model's attributes, so loading a file runs code
    from it; these write and read plain values and tensors only (see ``_model_file``), and
    write atomically.
    """

    def save(
        self,
        dir_path: str | os.PathLike,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        save_kwargs: dict | None = None,
        **anndata_write_kwargs,
    ):
        """Save the model (and optionally its AnnData) to a folder.

        The files are written to a temporary folder beside ``dir_path`` and moved into place
        only once complete, so an interrupted save never leaves a half-written model, and
        ``overwrite=True`` keeps the previous model until the new one is written. ``model.pt``
        holds only tensors and plain values: :meth:`load` reads it without running code. The
        folder and its files get the permissions of the user's umask, like any folder they
        make (readable by others with the common ``umask 022``).

        Parameters
        ----------
        dir_path
            Folder to save to (created if needed).
        prefix
            Prefix of the saved file names.
        overwrite
            Replace a model already saved in ``dir_path``; other files there are kept.
        save_anndata
            Also save the training AnnData (``adata.h5ad``), so ``load`` needs no AnnData.
        save_kwargs
            Keyword arguments for :func:`torch.save`.
        **anndata_write_kwargs
            Keyword arguments for :meth:`anndata.AnnData.write_h5ad`.

        Returns
        -------
        None
            ``dir_path`` holds ``model.pt`` (and ``adata.h5ad`` with ``save_anndata=True``).

        Raises
        ------
        ValueError
            ``dir_path`` is a file, holds a model and ``overwrite`` is False, or lies in a
            folder this user cannot write in.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> ScDiffusion.setup_anndata(adata, cell_type_key="cell_type")
        >>> model = ScDiffusion(adata)
        >>> model.train()  # doctest: +SKIP
        >>> model.save("pbmc_model/", overwrite=True, save_anndata=True)  # doctest: +SKIP
        >>> model = ScDiffusion.load("pbmc_model/")  # doctest: +SKIP
        """
        folder, prefix = self._model_folder(dir_path, prefix)
        attributes = {
            name: value for name, value in self._get_user_attributes() if name[-1] == "_"
        }
        var_names = np.asarray(self.adata.var_names.astype(str), dtype=object)

        def write(folder: Path) -> list[str]:
            written = []
            if save_anndata:
                adata_name = f"{prefix}{SAVE_KEYS.ADATA_FNAME}"
                self.adata.write_h5ad(folder / adata_name, **anndata_write_kwargs)
                written.append(adata_name)
            model_name = f"{prefix}{SAVE_KEYS.MODEL_FNAME}"
            write_model_file(
                folder / model_name,
                self.module.state_dict(),
                var_names,
                attributes,
                **(save_kwargs or {}),
            )
            # the model file last: an existing folder gets the new model only once complete
            return [*written, model_name]

        save_atomically(folder, overwrite, write)

    @staticmethod
    def _model_folder(dir_path, prefix) -> tuple[Path, str]:
        """The folder of a saved model and its file-name prefix, type-checked."""
        if not isinstance(dir_path, (str, os.PathLike)):
            raise TypeError(f"`dir_path` must be a folder path, got {type(dir_path).__name__}.")
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string or None, got {type(prefix).__name__}.")
        return Path(dir_path), prefix or ""

    @classmethod
    def load_registry(cls, dir_path: str | os.PathLike, prefix: str | None = None) -> dict:
        """Return the registry saved with a model, read without running code.

        Parameters
        ----------
        dir_path
            Folder of the saved model.
        prefix
            Prefix of the saved file names.

        Returns
        -------
        dict
            scvi-tools' registry: the setup arguments, the registered fields and their
            categories, and the model class that saved it.

        Examples
        --------
        >>> from scvi_diffusion import ScDiffusion
        >>> registry = ScDiffusion.load_registry("pbmc_model/")  # doctest: +SKIP
        >>> registry["setup_args"]["cell_type_key"]  # doctest: +SKIP
        'cell_type'
        """
        folder, prefix = cls._model_folder(dir_path, prefix)
        _, _, attr_dict = read_model_file(folder / f"{prefix}{SAVE_KEYS.MODEL_FNAME}")
        return attr_dict["registry_"]

    @classmethod
    def view_setup_args(cls, dir_path: str | os.PathLike, prefix: str | None = None) -> None:
        """Print the arguments a saved model was set up with (read without running code).

        Parameters
        ----------
        dir_path
            Folder of the saved model.
        prefix
            Prefix of the saved file names.

        Examples
        --------
        >>> from scvi_diffusion import ScDiffusion
        >>> ScDiffusion.view_setup_args("pbmc_model/")  # doctest: +SKIP
        """
        AnnDataManager.view_setup_method_args(cls.load_registry(dir_path, prefix))

    @classmethod
    @devices_dsp.dedent
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata: ad.AnnData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
    ) -> ScDiffusion:
        """Load a saved model, without running any code from the model file.

        Parameters
        ----------
        dir_path
            Folder of the saved model.
        adata
            AnnData with the training genes, in the same order, and the registered obs
            columns (it is registered like the training data). Default: the AnnData saved with
            the model (``save(..., save_anndata=True)``).
        %(param_accelerator)s
        %(param_device)s
        prefix
            Prefix of the saved file names.

        Returns
        -------
        ScDiffusion
            The model, on the chosen device, in evaluation mode.

        Raises
        ------
        FileNotFoundError
            No model in ``dir_path``.
        ValueError
            The model file is truncated or corrupted, holds pickled Python objects (which
            could run code; it is refused), was saved by another model class, or its genes
            differ from ``adata``'s.

        Examples
        --------
        >>> import scvi_diffusion
        >>> from scvi_diffusion import ScDiffusion
        >>> adata = scvi_diffusion.data.pbmc68k()
        >>> model = ScDiffusion.load("pbmc_model/", adata=adata)  # doctest: +SKIP
        >>> model = ScDiffusion.load("pbmc_model/", accelerator="gpu")  # doctest: +SKIP
        >>> cells = model.generate(n=100, cell_type="CD19+ B", seed=0)  # doctest: +SKIP
        """
        dir_path, prefix = cls._model_folder(dir_path, prefix)
        if adata is not None and not isinstance(adata, ad.AnnData):
            raise TypeError(f"`adata` must be an AnnData or None, got {type(adata).__name__}.")
        model_path = dir_path / f"{prefix}{SAVE_KEYS.MODEL_FNAME}"
        state_dict, var_names, attr_dict = read_model_file(model_path)
        registry = attr_dict.pop("registry_", None) or {}
        saved_by = registry.get(MODEL_NAME_KEY)
        if saved_by != cls.__name__:
            raise ModelFileError(
                f"{str(model_path)!r} holds a {saved_by} model, not a {cls.__name__}; load it "
                f"with {saved_by}.load."
            )
        if adata is None:
            adata_path = dir_path / f"{prefix}{SAVE_KEYS.ADATA_FNAME}"
            if not adata_path.is_file():
                raise ValueError(
                    f"No AnnData was saved with the model in {str(dir_path)!r}; pass the "
                    "training AnnData: `ScDiffusion.load(path, adata)` (or save with "
                    "`save_anndata=True`)."
                )
            adata = ad.read_h5ad(adata_path)
        check_genes(var_names, adata)
        _, _, torch_device = parse_device_args(
            accelerator=accelerator,
            devices=device,
            return_device="torch",
            validate_single_device=True,
        )
        cls.setup_anndata(adata, source_registry=registry, **registry[SETUP_ARGS_KEY])
        init_params = attr_dict.pop("init_params_")
        kwargs = {k: v for group in init_params["kwargs"].values() for k, v in group.items()}
        arguments = {**init_params["non_kwargs"], **kwargs}
        if arguments.get("denoiser_width") is None:
            # the default width changed (256 to 160): a file keeps the width it was saved with
            arguments["denoiser_width"] = _saved_denoiser_width(state_dict)
        model = cls(adata, **arguments)
        for name, value in attr_dict.items():
            setattr(model, name, value)
        model.module.on_load(model)
        try:
            model.module.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ModelFileError(
                f"The weights in {str(model_path)!r} do not fit the model its parameters "
                f"describe ({str(error).splitlines()[0]}); the file may come from another "
                "version of scvi-diffusion."
            ) from None
        model.to_device(torch_device)
        model.module.eval()
        return model


def _saved_denoiser_width(state_dict: dict) -> int | None:
    """The width of the first level of a saved denoiser (``None`` without one)."""
    weight = state_dict.get(_DENOISER_FIRST_LEVEL)
    return None if weight is None else int(weight.shape[0])
