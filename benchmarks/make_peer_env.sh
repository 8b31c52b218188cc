#!/usr/bin/env bash
# Creates the virtual environment for the neural-tangents peer column of
# benchmarks/bench_ntk.py. neural-tangents 0.6.5 needs an older JAX (and NumPy < 2)
# than the TensorFlow environment allows, so it gets an environment of its own.
#
#   benchmarks/make_peer_env.sh [DIR]      (default DIR: .venv-nt in the repository)
#   DIR/bin/python benchmarks/bench_neural_tangents.py --out benchmarks/results/neural_tangents.json
#
# Needs python3 (3.9-3.12: jaxlib 0.4.23 has no wheels for newer Pythons) with the
# venv module; set PYTHON=/path/to/python3.x to choose another interpreter.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$HERE/.venv-nt}"
PY="${PYTHON:-python3}"

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "jax==0.4.23" "jaxlib==0.4.23" "neural-tangents==0.6.5" \
    "tf2jax==0.3.6" "numpy<2" "scipy<1.14"
echo "peer environment ready: $VENV/bin/python benchmarks/bench_neural_tangents.py --help"
