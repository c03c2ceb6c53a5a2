"""Sphinx configuration: myst-nb pages and notebooks, sphinx-book-theme, numpydoc-style API."""

from datetime import date
from importlib.metadata import version as package_version

project = "scvi-diffusion"
author = "scvi-diffusion developers"
copyright = f"{date.today().year}, {author}"
release = package_version("scvi-diffusion")
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinxcontrib.bibtex",
    "sphinxarg.ext",
    "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# notebooks are committed with their outputs (executed by `make tutorials`); CI executes them
# separately with small budgets (`make tutorials-ci`), so the docs build does not run them
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
# an "Attributes" section lists fields; autosummary documents them once, as objects
napoleon_use_ivar = True
napoleon_custom_sections = [("Params", "Parameters")]

bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"

html_theme = "sphinx_book_theme"
html_title = "scvi-diffusion"
html_theme_options = {
    "repository_url": "https://github.com/scverse/scvi-diffusion",
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
html_show_sphinx = False
