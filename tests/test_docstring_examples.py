"""Every docstring example of the package runs and prints what it shows.

Output shown as ``...`` may stand for any text. Examples that need a context
they do not build (a trained model, data) mark those lines
``# doctest: +SKIP``; every other line is executed here, so an example that
drifts from the code fails a test instead of misleading a reader.
"""

import doctest
import importlib
import pkgutil

import pytest

import keras_kare

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(keras_kare.__path__, "keras_kare.") if not m.name.endswith("__main__")
)  # __main__ runs the command line when imported


def test_the_package_has_modules_to_check():
    assert "keras_kare.reproduce.uci_recipes" in MODULES and "keras_kare.model" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.ELLIPSIS)  # "..." elides long outputs
    for test in finder.find(module, name):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} docstring example lines of {name} failed (output above)"
