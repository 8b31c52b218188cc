"""Seed spread of a UCI comparison against hand-computed values; run-folder checks."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_kare.reproduce import seeds as S

METHODS = ["ensemble_es", "after_kernel", "dnn"]
# seed -> data set -> (ensemble_es, after_kernel, dnn) validated accuracies in %
ACC = {
    0: {"a": (80, 70, 60), "b": (50, 60, 60), "c": (90, 90, 95)},
    3: {"a": (70, 70, 65), "b": (60, 50, 55), "c": (92, 90, 90)},
}


def _rows(table: dict, drop=None, methods=METHODS) -> list:
    rows = []
    for name, values in table.items():
        row = {"dataset": name}
        for m, v in zip(methods, values):
            row[f"{m}_validated"] = None if (name, m) == drop else v / 100
            row[f"{m}_paper"] = (v + 1) / 100
        rows.append(row)
    return rows


def _per_seed(drop=None):
    return {seed: _rows(t, drop if seed == 3 else None) for seed, t in ACC.items()}


def test_means_ranks_and_spread_match_hand_computation():
    sp = S.seed_spread(_per_seed(), METHODS)
    assert sp["headline"] == "ensemble_es" and sp["seeds"] == [0, 3] and sp["dropped"] == []
    # seed 0: means 73.33, 66.67, 71.67; ranks a: 1,2,3  b: 3,1.5,1.5  c: 2.5,2.5,1
    assert sp["per_seed"][0]["ensemble_es"]["mean"] == pytest.approx(220 / 3)
    assert sp["per_seed"][0]["dnn"]["mean"] == pytest.approx(215 / 3)
    assert [sp["per_seed"][0][m]["rank"] for m in METHODS] == pytest.approx([6.5 / 3, 6 / 3, 5.5 / 3])
    # seed 3: means 74, 70, 70; ranks a: 1.5,1.5,3  b: 1,3,2  c: 1,2.5,2.5
    assert [sp["per_seed"][3][m]["mean"] for m in METHODS] == pytest.approx([74, 70, 70])
    assert [sp["per_seed"][3][m]["rank"] for m in METHODS] == pytest.approx([3.5 / 3, 7 / 3, 7.5 / 3])
    e = sp["over_seeds"]["ensemble_es"]
    assert e["mean"] == pytest.approx((220 / 3 + 74) / 2)
    assert e["mean_sd"] == pytest.approx(abs(220 / 3 - 74) / np.sqrt(2))  # SD of two values, ddof=1
    assert e["rank"] == pytest.approx((6.5 / 3 + 3.5 / 3) / 2)
    # per-table |difference| between the two seeds: 10, 10, 2 -> SD = |d|/sqrt(2)
    assert e["table_sd"] == pytest.approx(np.mean([10, 10, 2]) / np.sqrt(2))
    assert e["table_range"] == pytest.approx(10)
    assert sp["over_seeds"]["dnn"]["table_range"] == pytest.approx(5)
    # seed-averaged tables: a (75, 70, 62.5), b (55, 55, 57.5), c (91, 90, 92.5)
    assert sp["per_table"]["b"] == pytest.approx({"ensemble_es": 55, "after_kernel": 55, "dnn": 57.5})
    assert sp["averaged"]["ensemble_es"]["mean"] == pytest.approx((75 + 55 + 91) / 3)
    assert [sp["averaged"][m]["rank"] for m in METHODS] == pytest.approx(
        [(1 + 2.5 + 2) / 3, (2 + 2.5 + 3) / 3, (3 + 1 + 1) / 3]
    )


def test_pairs_per_seed_and_seed_averaged():
    sp = S.seed_spread(_per_seed(), METHODS)
    by_b = {p["b"]: p for p in sp["pairs"]}
    assert set(by_b) == {"after_kernel", "dnn"}
    after = by_b["after_kernel"]
    assert after["per_seed_difference"] == pytest.approx([0, 4])  # seed 0: 220/3 each, a tie
    assert (after["seeds_ahead"], after["seeds_behind"]) == (1, 0)
    # seed-averaged: a 75 vs 70 win, b 55 vs 55 tie, c 91 vs 90 win
    assert (after["wins_a"], after["ties"], after["wins_b"]) == (2, 1, 0)
    assert after["mean_difference"] == pytest.approx(2.0)
    dnn = by_b["dnn"]
    assert dnn["per_seed_difference"] == pytest.approx([5 / 3, 4])
    # a 75 vs 62.5 win, b 55 vs 57.5 loss, c 91 vs 92.5 loss
    assert (dnn["wins_a"], dnn["ties"], dnn["wins_b"]) == (1, 0, 2)


def test_table_missing_a_number_or_a_run_is_dropped_from_every_seed():
    sp = S.seed_spread(_per_seed(drop=("b", "dnn")), METHODS)
    assert sp["datasets"] == ["a", "c"] and sp["dropped"] == ["b"]
    assert sp["per_seed"][0]["ensemble_es"]["mean"] == pytest.approx(85)  # seed 0 also without b
    per = _per_seed()
    per[3] = [r for r in per[3] if r["dataset"] != "c"]
    assert S.seed_spread(per, METHODS)["dropped"] == ["c"]


def test_paper_key_and_explicit_headline():
    sp = S.seed_spread(_per_seed(), METHODS, key="paper", headline="dnn")
    assert sp["per_seed"][0]["dnn"]["mean"] == pytest.approx(215 / 3 + 1)
    assert {p["b"] for p in sp["pairs"]} == {"ensemble_es", "after_kernel"}


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="two or more seeds"):
        S.seed_spread({0: _rows(ACC[0])}, METHODS)
    with pytest.raises(ValueError, match="headline 'svc'"):
        S.seed_spread(_per_seed(), METHODS, headline="svc")
    with pytest.raises(ValueError, match="key must be one of"):
        S.seed_spread(_per_seed(), METHODS, key="best")
    with pytest.raises(ValueError, match="no data set has a number"):
        S.seed_spread({0: _rows(ACC[0]), 1: [{"dataset": "z", "dnn_validated": 0.5}]}, METHODS)


def _write_run(folder: Path, seed: int, rows: list, **settings) -> Path:
    folder.mkdir(parents=True)
    base = {"datasets": ["a", "b", "c"], "seed": seed, "protocol": "validated", "recipes": [], "baselines": []}
    (folder / "settings.json").write_text(json.dumps({**base, **settings}))
    (folder / "results.json").write_text(json.dumps(rows))
    return folder


def test_load_runs_keys_by_seed_and_refuses_runs_that_differ(tmp_path):
    r0 = _write_run(tmp_path / "s0", 0, _rows(ACC[0]))
    r3 = _write_run(tmp_path / "s3", 3, _rows(ACC[3]))
    settings, per = S.load_uci_runs([r0, r3])
    assert settings["seed"] == 0 and list(per) == [0, 3] and per[3][0]["dataset"] == "a"
    other = _write_run(tmp_path / "grid", 1, _rows(ACC[3]), depths=[1, 2])
    with pytest.raises(ValueError, match="differ .* in depths"):
        S.load_uci_runs([r0, other])
    twin = _write_run(tmp_path / "twin", 0, _rows(ACC[3]))
    with pytest.raises(ValueError, match="seed 0 appears in two runs"):
        S.load_uci_runs([r0, twin])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no settings.json or results.json"):
        S.load_uci_runs([r0, tmp_path / "empty"])
    with pytest.raises(ValueError, match="two or more run folders"):
        S.load_uci_runs([r0])


def test_uci_methods_follow_the_run_settings():
    s = {"protocol": "validated", "recipes": ["kare_es", "dnn_es", "ensemble_es"], "baselines": ["svc"]}
    assert S.uci_methods(s) == [
        "kare", "kare_es", "ensemble_es", "after_kernel", "after_kernel_es", "dnn", "dnn_es", "svc",
    ]  # fmt: skip


def test_markdown_and_benchmark_script(tmp_path):
    sp = S.seed_spread(_per_seed(), METHODS)
    text = S.seed_spread_markdown(sp)
    assert "| NTK-KARE + after-kernel, early-stopped | 73.33 | 74.00 | 73.67 ± 0.47 |" in text
    assert "| after-kernel | +0.00, +4.00 | 1 / 0 | 2 / 1 / 0 | +2.00 [" in text
    paper_recipe = ["kare", "after_kernel", "dnn"]  # the methods of a run with recipes and baselines none
    runs = [_write_run(tmp_path / f"s{s}", s, _rows(ACC[s], methods=paper_recipe)) for s in ACC]
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "uci_seeds.py"
    out = tmp_path / "spread.json"
    done = subprocess.run(
        [sys.executable, str(script), *map(str, runs), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "| NTK-KARE | 73.33 | 74.00 | 73.67 ± 0.47 |" in done.stdout
    assert json.loads(out.read_text())["spread"]["datasets"] == ["a", "b", "c"]


def test_combine_puts_a_later_control_beside_stored_runs_and_refuses_mismatches(tmp_path):
    stored = ({"seed": 0, "data_dir": "DATA/uci-dev", "recipes": ["kare_es"], "baselines": ["svc"]}, _per_seed())
    control_rows = {s: [{"dataset": n, "ntk_init_validated": 0.5, "n_classes": 2} for n in ACC[s]] for s in ACC}
    control = ({"seed": 0, "data_dir": "/x/uci-dev", "recipes": ["ntk_init"], "paper_methods": False}, control_rows)
    settings, per = S.combine_runs(stored, control)
    assert settings["recipes"] == ["kare_es", "ntk_init"] and settings["baselines"] == ["svc"]
    assert settings["paper_methods"] is True
    assert per[3][1] == {**_rows(ACC[3])[1], "ntk_init_validated": 0.5, "n_classes": 2}
    sp = S.seed_spread(per, METHODS + ["ntk_init"])
    assert sp["per_seed"][0]["ntk_init"]["mean"] == pytest.approx(50)
    assert sp["pairs"][-1]["per_seed_difference"] == pytest.approx([220 / 3 - 50, 74 - 50])

    with pytest.raises(ValueError, match="differ in depths"):
        S.combine_runs(stored, ({**control[0], "depths": [2]}, control_rows))
    with pytest.raises(ValueError, match="differ in data_dir"):
        S.combine_runs(stored, ({**control[0], "data_dir": "/x/uci-held-out"}, control_rows))
    with pytest.raises(ValueError, match="other seeds"):
        S.combine_runs(stored, (control[0], {0: control_rows[0]}))
    with pytest.raises(ValueError, match="seed 3: .* other data sets"):
        S.combine_runs(stored, (control[0], {0: control_rows[0], 3: control_rows[3][:2]}))
    with pytest.raises(ValueError, match="dnn_validated in both"):
        S.combine_runs(stored, (control[0], {s: _rows(ACC[s], methods=["dnn"]) for s in ACC}))
    rerun = {s: [{**r, "dnn_validated": r["dnn_validated"] + (0.01 if s == 3 else 0.0)} for r in rows]
             for s, rows in _per_seed().items()}  # fmt: skip
    rerun = {
        s: [{k: v for k, v in r.items() if k in ("dataset", "dnn_validated")} for r in rows]
        for s, rows in rerun.items()
    }
    kept_settings, kept = S.combine_runs(stored, (control[0], rerun), keep_first=True)
    assert kept[3] == _per_seed()[3] and kept[0] == _per_seed()[0]  # the stored numbers
    assert kept_settings["overlap"] == {"entries": 6, "differ": 3, "max_abs_difference": pytest.approx(0.01)}
    assert S.combine_runs((kept_settings, kept), control)[1][0][0]["ntk_init_validated"] == 0.5  # combined again
    clash = {s: [{**r, "n_classes": 3} for r in rows] for s, rows in control_rows.items()}
    with pytest.raises(ValueError, match="disagree on n_classes"):
        S.combine_runs(({**stored[0]}, {s: [{**r, "n_classes": 2} for r in rows] for s, rows in stored[1].items()}),
                       (control[0], clash))  # fmt: skip
    assert control_rows[0][0] == {"dataset": "a", "ntk_init_validated": 0.5, "n_classes": 2}  # inputs untouched


def test_benchmark_script_combines_with_a_stored_comparison(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "uci_seeds.py"
    paper = ["kare", "after_kernel", "dnn"]
    runs = [_write_run(tmp_path / f"s{s}", s, _rows(ACC[s], methods=paper)) for s in ACC]
    stored = tmp_path / "stored.json"
    cmd = [sys.executable, str(script), *map(str, runs), "--out", str(stored)]
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=120).returncode == 0
    controls = [
        _write_run(tmp_path / f"c{s}", s, _rows(ACC[s], methods=["ntk_init", "svc"]), recipes=["ntk_init"],
                   baselines=["svc"], paper_methods=False)
        for s in ACC
    ]  # fmt: skip
    out = tmp_path / "combined.json"
    cmd = [sys.executable, str(script), *map(str, controls), "--combine", str(stored), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| NTK at initialisation (untrained) | 73.33 | 74.00 | 73.67 ± 0.47 |" in done.stdout
    data = json.loads(out.read_text())
    assert data["spread"]["methods"] == ["kare", "ntk_init", "after_kernel", "dnn", "svc"]
    assert data["combined_with"] == str(stored)
    cmd += ["--headline", "ntk_init"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| NTK at initialisation (untrained) against |" in done.stdout
    assert json.loads(out.read_text())["spread"]["headline"] == "ntk_init"


def test_stored_seeds_script_merges_per_table_summaries_and_a_seed_comparison(tmp_path):
    """Per-table summaries of piecewise runs (some methods here, others there) give the run folders' spread."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "uci_stored_seeds.py"

    def summary(seed, methods):  # a per-table summary (benchmarks/results/uci_paper_grid_*.json) of some methods
        per = {n: {"accuracy": {m: {"validated": v / 100, "paper": 0.0} for m, v in zip(METHODS, vals) if m in methods}}
               for n, vals in ACC[seed].items()}  # fmt: skip
        path = tmp_path / f"summary{seed}_{'_'.join(methods)}.json"
        path.write_text(json.dumps({"per_table": per}))
        return path

    # a uci_seeds.py JSON holding every method at both seeds, with other numbers at seed 0 (e.g. another grid)
    changed = {"dnn_validated": 0.01, "after_kernel_validated": 0.02}
    other = {str(s): [{**r, **changed} if s == 0 else r for r in _rows(ACC[s])] for s in ACC}
    comparison = tmp_path / "comparison.json"
    comparison.write_text(json.dumps({"settings": {}, "results": other}))
    sources = [
        f"0:{summary(0, ['ensemble_es', 'after_kernel'])}",
        f"0:{summary(0, ['dnn'])}",
        f"0:{comparison}@after_kernel",  # after_kernel twice at seed 0: the first source's number is kept, dnn not read
        f"3:{comparison}@ensemble_es,after_kernel,dnn",
    ]
    out = tmp_path / "spread.json"
    cmd = [sys.executable, str(script), "--methods", ",".join(METHODS), "--out", str(out)]
    done = subprocess.run(cmd + [a for s in sources for a in ("--source", s)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "numbers given by two sources: 3, of which differ: 3" in done.stdout
    expected = S.seed_spread(_per_seed(), METHODS)  # the spread of the run folders themselves
    got = json.loads(out.read_text())["spread"]
    assert got["datasets"] == ["a", "b", "c"]
    for m in METHODS:
        assert got["over_seeds"][m]["mean"] == pytest.approx(expected["over_seeds"][m]["mean"])
        assert got["averaged"][m]["rank"] == pytest.approx(expected["averaged"][m]["rank"])
    assert [p["mean_difference"] for p in got["pairs"]] == pytest.approx(
        [p["mean_difference"] for p in expected["pairs"]]
    )

    # --datasets narrows the comparison to a subset: the spread of those tables' rows alone
    subset = subprocess.run(cmd + ["--datasets", "a,c"] + [a for s in sources for a in ("--source", s)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert subset.returncode == 0, subset.stderr
    only = {s: [r for r in rows if r["dataset"] in ("a", "c")] for s, rows in _per_seed().items()}
    expected = S.seed_spread(only, METHODS)
    got = json.loads(out.read_text())["spread"]
    assert got["datasets"] == ["a", "c"]
    for m in METHODS:
        assert got["over_seeds"][m]["mean"] == pytest.approx(expected["over_seeds"][m]["mean"])
    unknown = subprocess.run(cmd + ["--datasets", "a,zz"] + [a for s in sources for a in ("--source", s)],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert unknown.returncode != 0 and "no source has: zz" in unknown.stderr

    bad = subprocess.run([sys.executable, str(script), "--methods", "dnn", "--source", f"x:{comparison}"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode != 0 and "expected SEED:PATH" in bad.stderr
