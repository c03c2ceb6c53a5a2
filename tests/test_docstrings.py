"""Docstrings of the public API: numpydoc sections are there, and every example runs.

To cover more of the API, add a ``(module, names)`` pair to ``PUBLIC`` (a method or property
as ``"Class.name"``): its docstring is then checked for the numpydoc sections, and every
doctest of the module that defines it runs, e.g.
``("scvi_diffusion", ["ScDiffusion", "ScDiffusion.train", "ScDiffusion.generate"])``.
"""

import doctest
import importlib
import inspect
import io
import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from threadpoolctl import threadpool_limits

from scvi_diffusion import data, metrics, pl

try:
    from numpydoc.docscrape import NumpyDocString
except ImportError:  # pragma: no cover - numpydoc is in the test extras
    NumpyDocString = None

PUBLIC = [
    (
        "scvi_diffusion.metrics",
        [*metrics.__all__, "SharedSpace.subset", "SharedSpace.n_real", "SharedSpace.n_synthetic"],
    ),
    ("scvi_diffusion.pl", pl.__all__),
    ("scvi_diffusion.data", data.__all__),
    ("scvi_diffusion", ["ModelFileError", "NonFiniteLossError"]),
    (
        "scvi_diffusion",
        [
            "ScDiffusion",
            "ScDiffusion.setup_anndata",
            "ScDiffusion.from_scvi_model",
            "ScDiffusion.train",
            "ScDiffusion.generate",
            "ScDiffusion.save",
            "ScDiffusion.load",
            "ScDiffusion.load_registry",
            "ScDiffusion.view_setup_args",
            "ScDiffusion.guidance",
            "ScDiffusion.condition_keys",
            "ScDiffusion.condition_roles",
        ],
    ),
]

SECTIONS = ("Parameters", "Returns", "Yields", "Raises", "Attributes", "See Also", "Examples")


def _resolve(module_name: str, name: str):
    obj = importlib.import_module(module_name)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _function(obj):
    """A property's getter, otherwise ``obj``."""
    return obj.fget if isinstance(obj, property) else obj


def _doctest_name(obj) -> str:
    """The name :class:`doctest.DocTestFinder` gives ``obj``'s docstring."""
    return f"{_function(obj).__module__}.{_function(obj).__qualname__}"


PUBLIC_OBJECTS = [
    (f"{module}.{name}", _resolve(module, name)) for module, names in PUBLIC for name in names
]
PUBLIC_IDS = [path for path, _ in PUBLIC_OBJECTS]


def _doctests() -> list[doctest.DocTest]:
    """Every docstring with examples in the modules that define the public objects.

    Examples start from empty globals, as in a fresh session: each imports what it uses.
    """
    modules = {module for module, _ in PUBLIC}
    modules |= {_function(obj).__module__ for _, obj in PUBLIC_OBJECTS}
    finder = doctest.DocTestFinder()
    tests = []
    for name in sorted(modules):
        found = finder.find(importlib.import_module(name), name, globs={})
        tests.extend(test for test in found if test.examples)
    return sorted(tests, key=lambda test: test.name)


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_examples_run(test):
    output = io.StringIO()
    runner = doctest.DocTestRunner(verbose=False)
    try:
        # Two BLAS threads competing for a busy machine's cores made one SVD 60 times slower.
        with threadpool_limits(limits=1):
            result = runner.run(test, out=output.write)
    finally:
        plt.close("all")
    assert result.failed == 0, output.getvalue()


def test_every_public_object_has_examples():
    found = {test.name for test in DOCTESTS}
    missing = [path for path, obj in PUBLIC_OBJECTS if _doctest_name(obj) not in found]
    assert not missing, f"No runnable examples in the docstrings of {missing}."


def _parameters(obj) -> list[str]:
    """What a caller passes (``self`` excluded; ``*args``, ``**kwargs`` so named)."""
    if isinstance(obj, property):
        return []
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # exceptions without an __init__ of their own
        return []
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    names = [prefix.get(p.kind, "") + p.name for p in signature.parameters.values()]
    # a method looked up on its class, unbound
    return names[1:] if names[:1] == ["self"] else names


def _required_sections(obj) -> set[str]:
    """Examples always; Parameters if it takes arguments; for a function or method that
    returns something, Returns (Yields for a generator). Classes, exception classes included,
    and properties have no Returns."""
    required = {"Examples"}
    if _parameters(obj):
        required.add("Parameters")
    if inspect.isclass(obj) or isinstance(obj, property):
        return required
    if inspect.isgeneratorfunction(obj):
        required.add("Yields")
    elif inspect.signature(obj).return_annotation not in (None, "None"):
        required.add("Returns")
    return required


def _numpydoc(obj) -> "NumpyDocString":
    # numpydoc warns about unknown or misspelt section headers: an error here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return NumpyDocString(inspect.getdoc(obj) or "")


def _summary_and_sections(obj) -> tuple[list[str], set[str]]:
    """The summary's lines and the non-empty sections of ``obj``'s docstring."""
    if NumpyDocString is not None:
        parsed = _numpydoc(obj)
        return parsed["Summary"], {section for section in SECTIONS if parsed[section]}
    doc = inspect.getdoc(obj) or ""
    summary = doc.split("\n\n", 1)[0].splitlines()
    return summary, set(re.findall(r"^(\w[\w ]*)\n-{3,}$", doc, flags=re.MULTILINE))


@pytest.mark.parametrize(("path", "obj"), PUBLIC_OBJECTS, ids=PUBLIC_IDS)
def test_numpydoc_sections(path, obj):
    summary, sections = _summary_and_sections(obj)
    assert len(summary) == 1, f"{path}: the summary should be one line, got {summary}."
    missing = _required_sections(obj) - sections
    assert not missing, f"{path}: missing sections {sorted(missing)}."


@pytest.mark.skipif(NumpyDocString is None, reason="needs numpydoc")
@pytest.mark.parametrize(("path", "obj"), PUBLIC_OBJECTS, ids=PUBLIC_IDS)
def test_parameters_match_signature(path, obj):
    expected = _parameters(obj)
    if not expected:  # nothing to compare with (no signature, or no arguments)
        return
    documented = [
        name.strip()
        for parameter in _numpydoc(obj)["Parameters"]
        for name in parameter.name.split(",")
    ]
    assert documented == expected, f"{path}: documents {documented}, takes {expected}."
