"""benchmarks/uci_by_size.py: per-table differences against table size, from stored comparisons."""

import importlib.util
import json
from pathlib import Path

import pytest

from keras_kare.reproduce import stats as S

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "uci_by_size.py"


def _script():
    spec = importlib.util.spec_from_file_location("uci_by_size", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# validated accuracies (fractions) of two methods on five tables at two seeds; rows per table
ACC = {
    "0": {"t1": (0.70, 0.80), "t2": (0.80, 0.78), "t3": (0.90, 0.85), "t4": (0.60, 0.50), "t5": (0.75, 0.70)},
    "1": {"t1": (0.72, 0.80), "t2": (0.80, 0.80), "t3": (0.88, 0.85), "t4": (0.64, 0.50), "t5": (0.77, 0.70)},
}
ROWS = {"t1": 10, "t2": 100, "t3": 300, "t4": 700, "t5": 1000}


def _files(tmp_path):
    results = {
        seed: [{"dataset": t, "best_validated": a, "other_validated": b} for t, (a, b) in tables.items()]
        for seed, tables in ACC.items()
    }
    comparison = tmp_path / "comparison.json"
    comparison.write_text(json.dumps({"spread": {"headline": "best"}, "results": results}))
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"per_table": {t: {"n_examples": n} for t, n in ROWS.items()}}))
    return comparison, sizes


def test_differences_sizes_and_correlation_by_hand(tmp_path, capsys):
    comparison, sizes = _files(tmp_path)
    out, png = tmp_path / "by_size.json", tmp_path / "by_size.png"
    _script().main(["--comparison", str(comparison), "--sizes", str(sizes), "--against", "other",
                    "--out", str(out), "--plot", str(png)])  # fmt: skip
    got = json.loads(out.read_text())
    assert got["headline"] == "best"
    r = got["methods"]["other"]
    assert r["tables"] == ["t1", "t2", "t3", "t4", "t5"] and r["rows"] == [10, 100, 300, 700, 1000]
    # seed-averaged differences in points, by hand: t1 (-10, -8), t2 (2, 0), t3 (5, 3), t4 (10, 14), t5 (5, 7)
    assert r["difference"] == pytest.approx([-9.0, 1.0, 4.0, 12.0, 6.0])
    assert r["low"] == pytest.approx([-10.0, 0.0, 3.0, 10.0, 5.0])
    assert r["high"] == pytest.approx([-8.0, 2.0, 5.0, 14.0, 7.0])
    # ranks of the differences 1, 2, 3, 5, 4 against rows 1..5: rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert r["rho"] == pytest.approx(0.9)
    assert r["p"] == pytest.approx(S.rank_correlation([1, 2, 3, 4, 5], [1, 2, 3, 5, 4])["p"])
    assert "| other | 5 | +0.900 |" in capsys.readouterr().out
    pytest.importorskip("matplotlib")
    assert png.stat().st_size > 1000


def test_missing_sizes_and_methods_are_clear_errors(tmp_path, capsys):
    comparison, sizes = _files(tmp_path)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"per_table": {"t1": {"rows": 10}}}))
    with pytest.raises(SystemExit):
        _script().main(["--comparison", str(comparison), "--sizes", str(partial), "--against", "other"])
    assert "no row count for t2, t3, t4, t5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _script().main(["--comparison", str(comparison), "--sizes", str(sizes), "--against", "nope"])
    assert "no validated accuracy of best or nope" in capsys.readouterr().err
