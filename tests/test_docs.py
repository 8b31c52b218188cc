"""The documentation runs and its links resolve.

- Every ```python block of README.md is executed, in order, each in a fresh namespace. Fast
  settings are substituted textually (``FAST`` below: each substitution must match, so the README
  and this test cannot drift apart silently). The scikit-learn block is skipped only while
  ``keras_kare.sklearn`` cannot be imported.
- ``tutorials/quickstart.py`` runs in a subprocess in its fast mode (``KERAS_KARE_QUICKSTART_FAST=1``), and so do
  the synthetic, UCI (on the test fixture) and MNIST (offline data given) tutorials (``KERAS_KARE_FAST=1``).
- Every relative link in README.md and docs/*.md points at an existing file.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# README text -> what the test runs instead (a few KARE steps instead of 100)
FAST = {"epochs=100": "epochs=3"}


def _python_blocks(path: Path) -> list:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def _fast(code: str) -> str:
    for old, new in FAST.items():
        code = code.replace(old, new)
    return code


def test_fast_substitutions_match_the_readme():
    text = "".join(_python_blocks(README))
    for old in FAST:
        assert old in text, f"README no longer contains {old!r}: update FAST in tests/test_docs.py"


@pytest.mark.parametrize("index", range(len(_python_blocks(README))))
def test_readme_python_block_runs(index, capsys):
    pytest.importorskip("sklearn")  # the README's examples load a scikit-learn data set
    code = _python_blocks(README)[index]
    if "keras_kare.sklearn" in code and importlib.util.find_spec("keras_kare.sklearn") is None:
        pytest.skip("keras_kare.sklearn is not in this tree")
    exec(compile(_fast(code), f"README.md block {index}", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", out).group(1))
    assert 0.5 < accuracy <= 1.0  # a working classifier on breast cancer, even after a few steps


def _run_tutorial(name: str, **env_overrides) -> str:
    """Run tutorials/<name> in a fresh interpreter; returns its standard output (fails with its stderr)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env_overrides)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    out = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_quickstart_runs_in_fast_mode():
    out = _run_tutorial("quickstart.py", KERAS_KARE_QUICKSTART_FAST="1")
    for name in ("NTK-KARE", "after-kernel", "DNN (MSE)"):
        assert name in out


def test_synthetic_tutorial_runs_in_fast_mode():
    out = _run_tutorial("synthetic.py", KERAS_KARE_FAST="1")
    line = re.search(r"best test MSE \(seed 0\): (.*)", out)
    mse = [float(v) for v in re.findall(r"(?:NTK-KARE|after-kernel|DNN) ([0-9.]+)", line.group(1) if line else "")]
    assert len(mse) == 3 and all(0.0 < v < 10.0 for v in mse), out  # finite test MSEs of targets of scale ~0.3


def test_uci_tutorial_runs_on_the_fixture_in_fast_mode():
    out = _run_tutorial("uci.py", KERAS_KARE_FAST="1")
    accuracy = [float(v) for v in re.findall(r"mean accuracy ([0-9.]+)%", out)]
    assert len(accuracy) == 3 and all(0.0 <= v <= 100.0 for v in accuracy), out


def test_mnist_tutorial_runs_in_fast_mode(offline_mnist):
    out = _run_tutorial("mnist.py", KERAS_KARE_FAST="1", KERAS_KARE_DATA=str(offline_mnist.parent))
    accuracy = [float(v) for v in re.findall(r"test accuracy(?: at the best ridge)? ([0-9.]+)", out)]
    assert len(accuracy) == 3 and all(0.0 <= v <= 1.0 for v in accuracy), out


def _relative_links(path: Path) -> list:
    links = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [link for link in links if not re.match(r"[a-z]+:", link) and not link.startswith("#")]


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    missing = [link for link in _relative_links(page) if not (page.parent / link.split("#")[0]).exists()]
    assert not missing, f"{page.name}: links to missing files {missing}"
