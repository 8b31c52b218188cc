from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    reqs = [line.split("#")[0].strip() for line in lines]
    return [r for r in reqs if r and not r.startswith("pytest")]


setup(
    name="keras-kare",
    version="0.1.0",
    description="Train a network's empirical NTK to minimise KARE, predict with kernel ridge regression (Keras 3 / TensorFlow).",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_kare", "keras_kare.*"]),
    python_requires=">=3.10",
    install_requires=requirements(),
    extras_require={"test": ["pytest>=7.4"]},
    entry_points={"console_scripts": ["keras-kare=keras_kare.cli:main"]},
    license="Apache-2.0",
)
