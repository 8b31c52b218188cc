"""Scoring against Fernández-Delgado et al.'s 179 classifiers, on small synthetic tables checked by hand."""

import os
from pathlib import Path

import numpy as np
import pytest

from keras_kare.reproduce.reference import load_reference, reference_table, score_against_reference

# Three data sets × three classifiers, in percent, "--" where a classifier failed; the same layout as the
# published file: right-aligned names, summary columns min/max/mean/std, then a dashed line and a footer.
ROWS = {"d1": ("80.0", "60.0", "--"), "d2": ("50.0", "50.0", "100.0"), "d3": ("90.0", "85.0", "70.0")}
OURS = {"d1": 0.70, "d2": 0.90, "d3": 0.90}


def _write(path: Path, rows=ROWS, header="problema  A  B  C  min  max  mean  std") -> Path:
    lines = [f"    {header}"] + [f"{name:>12}  {'  '.join(v)}  50.0  100.0  70.0  10.0" for name, v in rows.items()]
    lines += ["-" * 40, "        mean  73.3  65.0  85.0", "         std  20.8  18.0  21.2", ""]
    path.write_text("\n".join(lines))
    return path


def _per(ours=OURS, key="best") -> list:
    return [{"dataset": name, "accuracy": {"kare": {key: a}}} for name, a in ours.items()]


@pytest.fixture
def ref(tmp_path):
    return load_reference(_write(tmp_path / "delgado_results.txt"))


def test_parse_drops_summary_columns_and_footer_and_reads_failures(ref):
    assert ref.datasets == ["d1", "d2", "d3"]
    assert ref.classifiers == ["A", "B", "C"]
    expected = np.array([[0.8, 0.6, np.nan], [0.5, 0.5, 1.0], [0.9, 0.85, 0.7]])
    np.testing.assert_allclose(ref.accuracy, expected)  # NaN where "--", fractions not percent


def test_scores_by_hand(ref):
    # Columns [kare, A, B, C]; C failed on d1 and scores 0 there.
    # d1: .70 .80 .60 0  -> ranks 2 1 3 4,     best .80
    # d2: .90 .50 .50 1. -> ranks 2 3.5 3.5 1, best 1.0
    # d3: .90 .90 .85 .70 -> ranks 1.5 1.5 3 4, best .90
    s = score_against_reference(_per(), ["kare"], ref, named=("A", "C", "not-there"))
    assert (s["population"], s["n_datasets"], s["reference"]) == (4, 3, ["A", "C"])
    assert s["failed"] == {"A": 0, "C": 1}
    kare, a, c = s["scores"]["kare"], s["scores"]["A"], s["scores"]["C"]
    assert kare["friedman_rank"] == pytest.approx(5.5 / 3)
    assert a["friedman_rank"] == pytest.approx(2.0)
    assert c["friedman_rank"] == pytest.approx(3.0)  # ranked last where it failed
    assert kare["mean_accuracy"] == pytest.approx(250 / 3)
    assert c["mean_accuracy"] == pytest.approx(170 / 3)  # the failure counts as 0
    # P90 thresholds .72 .90 .81; P95 thresholds .76 .95 .855
    assert (kare["p90"], kare["p95"]) == (pytest.approx(200 / 3), pytest.approx(100 / 3))
    assert (a["p90"], a["p95"]) == (pytest.approx(200 / 3), pytest.approx(200 / 3))
    assert (c["p90"], c["p95"]) == (pytest.approx(100 / 3), pytest.approx(100 / 3))
    assert kare["pma"] == pytest.approx(100 * (0.7 / 0.8 + 0.9 + 1.0) / 3)  # 92.5
    assert a["pma"] == pytest.approx(100 * (1.0 + 0.5 + 1.0) / 3)
    assert c["pma"] == pytest.approx(100 * (0.0 + 1.0 + 0.7 / 0.9) / 3)


def test_dataset_absent_from_the_reference_is_reported_and_left_out(ref):
    per = _per() + [{"dataset": "mnist", "accuracy": {"kare": {"best": 0.99}}}]
    s = score_against_reference(per, ["kare"], ref)
    assert s["missing"] == ["mnist"] and s["n_datasets"] == 3 and s["datasets"] == ["d1", "d2", "d3"]
    assert s["scores"] == score_against_reference(_per(), ["kare"], ref)["scores"]


def test_a_method_without_a_number_drops_the_dataset_for_all(ref):
    per = _per(key="validated")
    per[1]["accuracy"]["kare"]["validated"] = None  # d2
    per[0]["accuracy"]["svc"] = {"validated": 0.5}
    per[2]["accuracy"]["svc"] = {"validated": 0.5}  # svc has no entry at all on d2
    s = score_against_reference(per, ["kare", "svc"], ref, key="validated", named=("A",))
    assert s["dropped"] == ["d2"] and s["n_datasets"] == 2 and s["population"] == 5
    # d1: .70 .50 | .80 .60 0 -> kare 2, A 1; d3: .90 .50 | .90 .85 .70 -> kare 1.5, A 1.5
    assert s["scores"]["kare"]["friedman_rank"] == pytest.approx(1.75)
    assert s["scores"]["A"]["friedman_rank"] == pytest.approx(1.25)
    assert "1 dropped" in reference_table(s)


def test_reference_table(ref):
    per = _per() + [{"dataset": "mnist", "accuracy": {"kare": {"best": 0.99}}}]
    lines = reference_table(score_against_reference(per, ["kare"], ref, named=("A", "C"))).splitlines()
    assert lines[0] == "| method | Friedman rank (of 4) | mean accuracy (%) | P90 | P95 | PMA (%) |"
    assert lines[2] == "| NTK-KARE | 1.8 | 83.33 ± 11.55 | 66.7 | 33.3 | 92.50 ± 6.61 |"
    assert [line.split(" | ")[0] for line in lines[3:5]] == ["| A", "| C"]
    assert lines[-2] == ""
    assert "1 of our methods + 3 classifiers" in lines[-1] and "best" in lines[-1] and "3 data sets" in lines[-1]
    assert "mnist" in lines[-1] and "C on 1" in lines[-1]


def test_bad_arguments(ref):
    with pytest.raises(ValueError, match="key"):
        score_against_reference(_per(), ["kare"], ref, key="paper")
    with pytest.raises(ValueError, match="fractions"):
        score_against_reference(_per({"d1": 70.0}), ["kare"], ref)
    with pytest.raises(ValueError, match="twice"):
        score_against_reference(_per() + _per(), ["kare"], ref)


@pytest.mark.parametrize(
    "rows, header, match",
    [
        ({"d1": ("80.0", "60.0")}, None, r"line 2 \(d1\): 7 fields, the header has 8"),
        ({"d1": ("80.0", "abc", "--")}, None, r"line 2 \(d1\), column B: 'abc' is neither a number nor '--'"),
        ({"d1": ("80.0", "160.0", "--")}, None, "not a percentage"),
        (ROWS, "dataset  A  B  C  min  max  mean  std", "problema"),
    ],
    ids=["ragged", "non-numeric", "out-of-range", "no-header"],
)
def test_bad_files_raise_naming_the_file(tmp_path, rows, header, match):
    path = _write(tmp_path / "bad.txt", rows, *([header] if header else []))
    with pytest.raises(ValueError, match=match) as err:
        load_reference(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_reference(tmp_path / "nope.txt")


@pytest.mark.skipif(not os.environ.get("KERAS_KARE_DATA"), reason="KERAS_KARE_DATA is not set")
def test_published_table():
    ref = load_reference(Path(os.environ["KERAS_KARE_DATA"]) / "uci-reference" / "delgado_results.txt")
    assert (len(ref.datasets), len(ref.classifiers)) == (121, 179)
    assert {"svm_C", "rf_caret", "parRF_caret", "elm_kernel_matlab"} <= set(ref.classifiers)
    assert np.nanmin(ref.accuracy) >= 0 and np.nanmax(ref.accuracy) <= 1
    # A method of ours at accuracy 0 changes neither the best nor anyone's P90/PMA: Fernández-Delgado et al.'s
    # abstract gives parRF_caret 94.1 % of the maximum accuracy, over 90 % of it on 84.3 % of data sets, svm_C 92.3 %.
    per = [{"dataset": d, "accuracy": {"zero": {"best": 0.0}}} for d in ref.datasets]
    s = score_against_reference(per, ["zero"], ref, named=("parRF_caret", "svm_C"))["scores"]
    assert (round(s["parRF_caret"]["pma"], 1), round(s["parRF_caret"]["p90"], 1)) == (94.1, 84.3)
    assert round(s["svm_C"]["pma"], 1) == 92.3


def test_uci_run_ranks_among_the_reference_population(tmp_path, monkeypatch):
    from keras_kare.reproduce import experiments as E
    from keras_kare.reproduce import uci_protocol as P
    from tests.test_uci_protocol import FakeTrial, _poisoned_dataset, _settings

    root = _poisoned_dataset(tmp_path / "data")
    monkeypatch.setattr(P, "neural_trial", FakeTrial())
    path = _write(tmp_path / "delgado_results.txt", rows={"poison": ("50.0", "--", "70.0")})
    with pytest.raises(ValueError, match="delgado_bad.txt"):  # a bad file fails before any training
        E.run_uci(_settings(root), tmp_path / "bad", log=lambda m: None,
                  reference=_write(tmp_path / "delgado_bad.txt", header="name A B C min max mean std"))  # fmt: skip
    assert not (tmp_path / "bad").exists()
    summary = E.run_uci(_settings(root), tmp_path / "run", log=lambda m: None, reference=path)
    validated = summary["reference"]["validated"]
    assert validated["population"] == 3 + 3 and validated["n_datasets"] == 1
    # validated: NTK-KARE 0.0 (the poisoned folds), after-kernel 0.0, DNN 0.0 against A .5, B failed, C .7
    assert validated["scores"]["kare"]["friedman_rank"] == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert summary["reference"]["best"]["scores"]["kare"]["mean_accuracy"] == pytest.approx(100 * 4 / 6)
    table = (tmp_path / "run" / "table.md").read_text()
    assert "Among the 179 classifiers of Fernández-Delgado et al. (delgado_results.txt), validated" in table
