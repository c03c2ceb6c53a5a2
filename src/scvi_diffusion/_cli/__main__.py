"""``python -m scvi_diffusion._cli``: the ``scvi-diffusion`` command without its script."""

from __future__ import annotations

import sys

from ._main import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
