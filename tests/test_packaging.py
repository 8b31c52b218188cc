"""Packaging: one version source, a small core install, optional extras named in errors, a quiet CLI."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import keras_kare
from keras_kare import _optional, _startup

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL_MODULES = ("matplotlib", "sklearn", "tensorflow_datasets")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements) -> set:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_one_version_source():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "keras_kare.version.__version__"}
    from keras_kare import version

    assert keras_kare.__version__ is version.__version__ and keras_kare.__version__.count(".") == 2
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: {re.escape(keras_kare.__version__)}$", citation, re.M), "CITATION.cff version"


def test_setup_py_is_a_shim():
    """pyproject.toml is the only metadata source: setup.py only calls setup() for tools that still run it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert len(calls) == 1 and calls[0].func.id == "setup" and not calls[0].args and not calls[0].keywords


def test_license_file_matches_pyproject():
    assert _pyproject()["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


@pytest.mark.slow
def test_wheel_builds_from_pyproject(tmp_path):
    """The wheel carries the version, the LICENSE and the package (no network: needs setuptools>=77 installed)."""
    import importlib.metadata
    import zipfile

    setuptools_version = importlib.metadata.version("setuptools")
    if int(setuptools_version.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools_version} < 77 (pyproject's build requirement); not downloading one")
    import shutil

    src = tmp_path / "src"  # a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    shutil.copytree(ROOT / "keras_kare", src / "keras_kare", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("keras_kare-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert f"keras_kare-{keras_kare.__version__}.dist-info/licenses/LICENSE" in names
    assert "keras_kare/version.py" in names


def test_core_dependencies_and_extras():
    project = _pyproject()["project"]
    assert _names(project["dependencies"]) == {"tensorflow", "keras", "numpy", "tensorboard", "threadpoolctl"}
    extras = project["optional-dependencies"]
    assert _names(extras["reproduce"]) == {"matplotlib", "scikit-learn"}
    assert _names(extras["tfds"]) == {"tensorflow-datasets"}
    assert {"pytest", "hypothesis", "keras-kare"} <= _names(extras["test"])
    assert "keras-kare[reproduce,sklearn,tfds]" in extras["test"]  # the suite runs every optional path
    # every optional import the code makes is installed by the extra its error names
    for module, (dist, extra) in _optional.OPTIONAL.items():
        assert dist in _names(extras[extra]), (module, extra)


def test_missing_extra_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(_optional.MissingExtraError, match=r"plotting needs matplotlib.*keras-kare\[reproduce\]"):
        _optional.require("matplotlib", "plotting")
    assert not _optional.available("matplotlib")
    with pytest.raises(ValueError, match="module must be one of"):
        _optional.require("pandas", "x")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # TensorFlow's default verbosity
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def test_core_imports_without_optional_packages():
    code = (
        "import sys\n"
        f"for m in {OPTIONAL_MODULES!r}: sys.modules[m] = None\n"
        "import keras_kare, keras_kare.callbacks, keras_kare.cli, keras_kare.datasets, keras_kare.reproduce\n"
        "print('imported')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and "imported" in out.stdout, out.stderr


def _one_line_error(cmd, tmp_path):
    out = subprocess.run(
        cmd + ["reproduce", "mnist", "--data-dir", str(tmp_path / "missing")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-kare: error:") and "missing" in lines[0], out.stderr


def test_cli_prints_no_tensorflow_startup_noise(tmp_path):
    _one_line_error([sys.executable, "-m", "keras_kare"], tmp_path)


@pytest.mark.slow
def test_console_script_prints_no_tensorflow_startup_noise(tmp_path):
    script = tmp_path / "keras-kare"  # the name pip gives the console script
    script.write_text("import sys\nfrom keras_kare.cli import main\nsys.exit(main())\n")
    _one_line_error([sys.executable, str(script)], tmp_path)


def test_invoked_as_cli(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/keras-kare", "reproduce"])
    assert _startup.invoked_as_cli()
    monkeypatch.setattr(sys, "argv", ["-m"])
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-X", "utf8", "-m", "keras_kare", "reproduce"], raising=False)
    assert _startup.invoked_as_cli()
    monkeypatch.setattr(sys, "argv", ["script.py"])
    monkeypatch.setattr(sys, "orig_argv", ["python3", "script.py", "-m", "x"], raising=False)
    assert not _startup.invoked_as_cli()


def test_library_import_leaves_stderr_alone(capfd):
    with _startup.tensorflow_startup(debug=False):  # not the command: a no-op
        os.write(2, b"kept\n")
    assert capfd.readouterr().err == "kept\n"
    with _startup.native_stderr_silenced():
        os.write(2, b"dropped\n")
    assert capfd.readouterr().err == ""


def test_the_library_does_not_import_the_reproduction():
    """Imports run one way: keras_kare.reproduce (and the CLI) may use the library, never the reverse."""
    package = ROOT / "keras_kare"
    upward = []
    for path in package.rglob("*.py"):
        rel = path.relative_to(package)
        if rel.parts[0] == "reproduce" or rel.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):  # from keras_kare.reproduce... / from keras_kare import reproduce
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = []
            upward += [f"{rel}:{node.lineno}: {n}" for n in names if n.startswith("keras_kare.reproduce")][:1]
    assert not upward, "library modules importing keras_kare.reproduce:\n" + "\n".join(upward)
