"""The check that an AnnData has the genes a model was trained on, in the same order."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd


def check_genes(var_names: np.ndarray, adata: ad.AnnData) -> None:
    """Raise a ValueError that names the missing and unexpected genes unless ``adata`` has
    exactly ``var_names``, in that order."""
    given = np.asarray(adata.var_names.astype(str))
    saved = np.asarray(var_names).astype(str)
    if np.array_equal(saved, given):
        return
    saved = pd.Index(saved)
    missing = saved.difference(given)
    extra = pd.Index(given).difference(saved)
    raise ValueError(
        f"The AnnData's genes differ from the {len(saved)} genes the model was "
        f"trained on ({len(missing)} missing, e.g. {list(missing[:5])}; {len(extra)} "
        f"unexpected, e.g. {list(extra[:5])}; or a different order). Subset and order "
        "it as `adata[:, model_var_names]`."
    )
