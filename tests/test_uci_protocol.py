"""UCI protocols: the validated protocol never selects on evaluation folds; outputs carry both protocols."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from keras_kare import cli
from keras_kare.datasets.uci import load_uci
from keras_kare.reproduce import experiments as E
from keras_kare.reproduce import uci_cost as Cost
from keras_kare.reproduce import uci_protocol as P
from keras_kare.reproduce import uci_recipes as Rc
from keras_kare.reproduce import uci_selection as Sel

UCI_DIR = Path(__file__).parent / "fixtures" / "uci"
LR_CLASS = {0.0: 0, 0.1: 0, 0.2: 1, 0.3: 2}  # the fake trial's configuration lr predicts this class everywhere


def _poisoned_dataset(root: Path) -> Path:
    """Rows 0-11 (the conxuntos split) hold classes 0 and 1, mostly 0 on the validation half; rows 12-19 appear
    only in the k-fold test folds and are all class 2: selecting on those folds would pick the class-2 config."""
    folder = root / "poison"
    folder.mkdir(parents=True)
    labels = [0, 1, 0, 1, 0, 1] + [0, 0, 0, 0, 1, 1] + [2] * 8
    rng = np.random.default_rng(0)
    lines = ["\tf1\tf2\tclase"] + [
        f"{i + 1}\t{a:.3f}\t{b:.3f}\t{c}" for i, ((a, b), c) in enumerate(zip(rng.normal(size=(20, 2)), labels))
    ]
    (folder / "poison_R.dat").write_text("\n".join(lines) + "\n")
    (folder / "poison.txt").write_text("n_entradas= 2\nn_clases= 3\n")
    (folder / "conxuntos.dat").write_text(" ".join(map(str, range(6))) + "\n" + " ".join(map(str, range(6, 12))) + "\n")
    train = " ".join(map(str, range(12)))
    (folder / "conxuntos_kfold.dat").write_text("".join(f"{train}\n{12 + 2 * k} {13 + 2 * k}\n" for k in range(4)))
    return root


class FakeTrial:
    """Predicts the class LR_CLASS[lr]; records which labels every call saw (calls are in protocol order)."""

    def __init__(self):
        self.calls = []

    def __call__(self, kind, depth, width, lr, x_tr, y_tr, x_ev, y_ev, s, pool=None, log=None):
        seen = set(np.argmax(y_tr, 1).tolist()) | set(np.argmax(y_ev, 1).tolist())
        call = {"kind": kind, "lr": lr, "labels": seen, "n_train": len(x_tr), "passes": s.get("passes")}
        self.calls.append({**call, "monitor": list(s.get("monitor", ()))})
        acc = float(np.mean(np.argmax(y_ev, 1) == LR_CLASS[lr]))
        base = {"depth": depth, "width": width, "lr": lr}
        out = -np.ones_like(y_ev, dtype=np.float64)
        out[:, LR_CLASS[lr]] = 1.0
        kernel_rec = {**base, "accuracy": [acc, acc / 2], "kare": [1.0, 2.0], "_pred_pick": out, "_pred_best": out}
        kinds = [kind] + ([Rc.MONITORED[kind]] if kind in s.get("monitor", ()) else [])  # a monitored grid training
        out = []
        for k in kinds:
            passes = {"passes": 30 * int(lr * 10)} if k in Rc.STEP_SELECTED else {}  # the step-selected passes
            if k.startswith("kare") or k == "ntk_init":  # KARE picks the first ridge
                out += [{"method": k, **kernel_rec, **passes}]
            else:
                out += [{"method": k, **base, "accuracy": acc, **passes}]
                out += [{"method": Rc.TRIAL_METHODS[k][1], **kernel_rec, **passes}]
        return out


def _settings(root, **kw):
    s = dict(
        E.UCI_DEFAULTS,
        depths=[1],
        widths=[4],
        kare_lrs=[0.1, 0.2, 0.3],
        dnn_lrs=[0.1, 0.2, 0.3],
        ridges=[0.1, 10.0],
        data_dir=str(root),
        protocol="validated",
        baselines=[],
        recipes=[],
        quick=False,
    )
    s.update(kw)
    return s


def test_selection_never_touches_evaluation_folds(tmp_path):
    root = _poisoned_dataset(tmp_path / "data")
    ds = load_uci(root, "poison")
    trial = FakeTrial()
    res = P.run_dataset(ds, _settings(root), E.UCI_KARE_LRS, trial=trial)
    n_grid = 6
    selection, folds = trial.calls[:n_grid], trial.calls[n_grid:]
    assert all(2 not in c["labels"] for c in selection)  # selection saw only conxuntos.dat rows
    assert folds and all(2 in c["labels"] for c in folds)  # the fold phase did read the poisoned test folds
    for m in ("kare", "after_kernel", "dnn"):
        a = res["accuracy"][m]
        assert a["validated_config"]["lr"] == 0.1  # class 0 is the validation majority (4 of 6)
        assert a["validation_accuracy"] == pytest.approx(4 / 6)
        assert a["fold_accuracy"] == [0.0] * 4 and a["validated"] == 0.0
        assert a["best"] == pytest.approx(4 / 6)  # the paper number: max over the conxuntos evaluation half
    # had the evaluation folds been used, the class-2 configuration (lr 0.3) would have won with accuracy 1
    x_tr, y_tr, _, x_te, y_te, _ = P.split(ds, 0)
    assert FakeTrial()("dnn", 1, 4, 0.3, x_tr, y_tr, x_te, y_te, {})[0]["accuracy"] == 1.0
    # one training per fold for KARE, one per fold for the DNN shared by its after-kernel
    assert len(folds) == 8 and {c["n_train"] for c in folds} == {12}


def test_recipes_never_touch_evaluation_folds(tmp_path):
    root = _poisoned_dataset(tmp_path / "data")
    trial = FakeTrial()
    recipes = ["kare_es", "kare_rel", "dnn_es", "ensemble", "ensemble_es"]
    recipes += ["kare_es0", "dnn_es0", "ensemble_es0", "ntk_init", "kare_vs", "dnn_vs", "ensemble_vs"]
    res = P.run_dataset(load_uci(root, "poison"), _settings(root, recipes=recipes), E.UCI_KARE_LRS, trial=trial)
    trained = ["kare", "dnn", "kare_es", "kare_rel", "dnn_es", "kare_es0", "dnn_es0"]
    n_grid = len(trained) * 3 + 1  # each training kind × 3 learning rates; ntk_init once; kare_vs, dnn_vs: none
    selection, folds = trial.calls[:n_grid], trial.calls[n_grid:]
    assert all(2 not in c["labels"] for c in selection)
    assert folds and all(2 in c["labels"] for c in folds)
    # the paper's grid trainings are monitored for the step-selected recipes; no fold training is
    assert [c["monitor"] for c in selection if c["kind"] in ("kare", "dnn")] == [["kare", "dnn"]] * 6
    assert not any(c["monitor"] for c in folds)
    assert {c["kind"] for c in folds} == {*trained, "ntk_init", "kare_vs", "dnn_vs"}
    assert len(folds) == (len(trained) + 3) * 4  # each DNN training serves both the network and its after-kernel
    # the step-selected folds train the chosen configuration (lr 0.1) for the passes chosen with it
    assert {(c["lr"], c["passes"]) for c in folds if c["kind"] in Rc.STEP_SELECTED} == {(0.1, 30)}
    assert all(c["passes"] is None for c in folds if c["kind"] not in Rc.STEP_SELECTED)
    assert res["accuracy"]["kare_vs"]["validated_passes"] == 30
    assert len(Rc.methods({"recipes": recipes})) == 18
    for m in Rc.methods({"recipes": recipes}):
        a = res["accuracy"][m]
        assert a["validation_accuracy"] == pytest.approx(4 / 6), m
        assert a["fold_accuracy"] == [0.0] * 4 and a["validated"] == 0.0, m
        assert a["best"] == pytest.approx(4 / 6), m
    assert all(not k.startswith("_") for r in res["configs"] + res["fold_configs"] for k in r)  # outputs not saved
    with pytest.raises(ValueError, match="ensemble_es needs the recipes kare_es and dnn_es"):
        Rc.check_recipes(["ensemble_es"])
    with pytest.raises(ValueError, match="ensemble_es0 needs the recipes kare_es0 and dnn_es0"):
        Rc.check_recipes(["kare_es", "dnn_es", "kare_es0", "ensemble_es0"])
    with pytest.raises(ValueError, match="unknown recipe.*'early'"):
        Rc.check_recipes(["early"])
    with pytest.raises(ValueError, match="kare_vs, dnn_vs read the paper's grid trainings"):
        Rc.check_methods({"protocol": "validated", "recipes": ["kare_vs", "dnn_vs"], "paper_methods": False})
    with pytest.raises(ValueError, match="ensemble_vs needs the recipes kare_vs and dnn_vs"):
        Rc.check_recipes(["kare_vs", "ensemble_vs"])


def test_validated_protocol_adds_the_best_honest_recipe_by_default(tmp_path, monkeypatch):
    assert Rc.resolve_recipes({"protocol": "validated", "recipes": None}) == list(Rc.VALIDATED_RECIPES)
    assert Rc.resolve_recipes({"protocol": "paper", "recipes": None}) == []
    assert Rc.resolve_recipes({"protocol": "validated", "recipes": []}) == []
    root = _poisoned_dataset(tmp_path / "data")
    monkeypatch.setattr(P, "neural_trial", FakeTrial())
    summary = E.run_uci(_settings(root, recipes=None), tmp_path / "run", log=lambda m: None)
    assert summary["settings"]["recipes"] == list(Rc.VALIDATED_RECIPES)  # stored as run
    assert Rc.BEST_RECIPE in summary["methods"]
    assert {p["a"] for p in summary["paired_vs_kare"]} == {Rc.BEST_RECIPE}
    assert "kare" in {p["b"] for p in summary["paired_vs_kare"]}
    table = (tmp_path / "run" / "table.md").read_text()
    assert "differences NTK-KARE + after-kernel, early-stopped, initial weights a candidate − other" in table
    assert Rc.BEST_RECIPE == "ensemble_es0" and set(Rc.ENSEMBLES[Rc.BEST_RECIPE]) <= set(
        Rc.methods(summary["settings"])
    )
    # runs made before this default was chosen are still anchored on their own best recipe
    assert Rc.headline(["kare", "ensemble_es", "dnn"]) == "ensemble_es" and Rc.headline(["kare", "dnn"]) == "kare"
    assert Rc.headline(["kare", "ensemble_es", "ensemble_vs"]) == "ensemble_vs"
    args = cli.build_parser().parse_args(
        ["reproduce", "uci", "--data-dir", str(UCI_DIR), "--out", str(tmp_path / "o"), "--recipes", "none"]
    )
    assert cli.make_settings(args)["recipes"] == []


def test_ensemble_decision_on_hand_made_scores():
    y = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])  # classes 0, 1, 0
    a = {"_pred_pick": np.array([[0.9, 0.1], [0.2, 0.3], [-0.4, 0.6]]), "_pred_best": None}  # 0, 1, 1: 2/3
    b = {"_pred_pick": np.array([[-0.2, 0.1], [0.0, 0.5], [0.5, -0.1]]), "_pred_best": None}  # 1, 1, 0: 2/3
    # the mean: [0.35, 0.1] → 0, [0.1, 0.4] → 1, [0.05, 0.25] → 1: 2/3
    assert Sel.ensemble_accuracy([a, b], y) == pytest.approx(2 / 3)
    b["_pred_pick"][2] = [1.5, -1.0]  # now the third row's mean is [0.55, -0.2] → 0: all right
    assert Sel.ensemble_accuracy([a, b], y) == 1.0
    assert Sel.ensemble_accuracy([a, None], y) is None
    assert Sel.ensemble_accuracy([a, b], y, "_pred_best") is None  # a member kept no outputs
    signs = Sel.ensemble_accuracy([{"_pred_pick": np.array([0.5, -2.0])}, {"_pred_pick": np.array([-1.0, 1.0])}],
                                np.array([-1.0, -1.0]))  # fmt: skip
    assert signs == 1.0  # ±1 targets: the sign of the mean, [-0.25, -0.5]


def test_inner_split_is_seeded_disjoint_and_leaves_rows_to_train():
    fit, held = P.inner_split(20, seed=3)
    assert len(held) == 4 and len(fit) == 16 and not set(fit) & set(held)
    assert sorted(np.concatenate([fit, held]).tolist()) == list(range(20))
    again = P.inner_split(20, seed=3)
    assert np.array_equal(again[1], held) and not np.array_equal(P.inner_split(20, seed=4)[1], held)
    assert [len(h) for _, h in (P.inner_split(n, 0) for n in (3, 4, 5))] == [1, 1, 1]
    with pytest.raises(ValueError, match="at least 3 training rows"):
        P.inner_split(2, 0)


def test_paper_protocol_trains_no_folds(tmp_path):
    root = _poisoned_dataset(tmp_path / "data")
    trial = FakeTrial()
    res = P.run_dataset(load_uci(root, "poison"), _settings(root, protocol="paper"), E.UCI_KARE_LRS, trial=trial)
    assert len(trial.calls) == 6 and "validated" not in res["accuracy"]["kare"]
    with pytest.raises(ValueError, match="protocol must be one of paper, validated"):
        P.run_dataset(load_uci(root, "poison"), _settings(root, protocol="honest"), E.UCI_KARE_LRS, trial=trial)


def test_choice_rules_by_hand():
    recs = [
        {"method": "kare", "depth": 1, "width": 4, "lr": 1.0, "accuracy": [0.5, 0.9], "kare": [None, 3.0]},
        {"method": "kare", "depth": 1, "width": 4, "lr": 2.0, "accuracy": [0.9, 0.95], "kare": [1.0, 0.5]},
        {"method": "kare", "depth": 2, "width": 4, "lr": 1.0, "accuracy": [0.95, 0.2], "kare": [float("nan"), 0.1]},
        {"method": "kare", "depth": 2, "width": 8, "lr": 1.0, "accuracy": [0.7, 0.7], "kare": [None, None]},
    ]
    assert [Sel.kare_pick(r) for r in recs] == [1, 1, 1, None]
    assert [Sel.validation_accuracy(r) for r in recs] == [0.9, 0.95, 0.2, None]
    assert Sel.choose(recs, "kare") is recs[1]
    assert Sel.choose(recs[:1] + [dict(recs[0], lr=3.0)], "kare")["lr"] == 1.0  # ties: first in grid order
    assert Sel.paper_best(recs, "kare") == 0.95
    sel = Sel.kare_selected(recs, "kare")
    assert sel["accuracy"] == 0.2 and sel["config"] == {"depth": 2, "width": 4, "lr": 1.0} and sel["ridge_index"] == 1


def test_undefined_ridges_never_count_as_best():
    """A ridge at which K/n + λI is not positive definite has NaN outputs (None once stored as JSON)."""
    from keras_kare.reproduce.runner import score

    assert all(np.isnan(score(np.array([0.3, np.nan]), np.array([1.0, -1.0]))))
    nan = float("nan")
    recs = [
        {"method": "kare", "depth": 1, "width": 4, "lr": 1.0, "accuracy": [nan, 0.8, 0.9], "kare": [nan, 0.2, 0.1]},
        {"method": "kare", "depth": 1, "width": 8, "lr": 1.0, "accuracy": [None, 0.85, 0.7], "kare": [None, 0.3, 0.4]},
        {"method": "kare", "depth": 2, "width": 4, "lr": 1.0, "accuracy": [nan, nan, nan], "kare": [nan, nan, nan]},
    ]
    assert Sel.paper_best(recs, "kare") == 0.9
    assert Sel.paper_best(recs[1:], "kare") == 0.85
    assert np.isnan(Sel.paper_best(recs[2:], "kare"))
    assert Sel.choose(recs, "kare") is recs[0] and Sel.validation_accuracy(recs[1]) == 0.85


def test_a_trained_network_whose_ntk_overflows_is_a_configuration_without_accuracy():
    """KAREModel keeps the weights of its last applied update, which can be the one that blew up: the NTK of
    those weights overflows float32. That configuration must get no accuracy (never chosen), not end the run."""
    from keras_kare.initializers import build_mlp
    from keras_kare.risk import NonFiniteKernelError, check_kernel_not_degenerate

    for trace in (float("inf"), float("nan")):
        with pytest.raises(NonFiniteKernelError, match="non-finite trace"):
            check_kernel_not_degenerate(trace, 4)
    assert issubclass(NonFiniteKernelError, ValueError)

    rng = np.random.default_rng(0)
    x_tr, x_ev = rng.normal(size=(12, 3)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")
    y_tr, y_ev = np.sign(rng.normal(size=12)), np.sign(rng.normal(size=6))
    net = build_mlp(3, 1, 4, 1, seed=0)
    net.set_weights([w * 1e20 for w in net.get_weights()])  # finite weights, Gram entries ~1e80: inf in float32
    assert all(np.isfinite(w).all() for w in net.get_weights())
    s = {"ridges": [0.1, 1.0, 10.0], "kernel": "summed_output"}
    base = {"depth": 1, "width": 4, "lr": 10.0}
    rec = P._kernel_record("kare", net, base, x_tr, y_tr, x_ev, y_ev, s, stopped_at=81)
    assert rec["kernel_not_finite"] and np.isnan(rec["accuracy"]).all() and np.isnan(rec["kare"]).all()
    assert rec["_pred_pick"] is None and rec["_pred_best"] is None
    assert Sel.validation_accuracy(rec) is None and np.isnan(Sel.paper_best([rec], "kare"))
    good = {"method": "kare", **base, "width": 8, "accuracy": [0.5, 0.6, 0.7], "kare": [0.3, 0.2, 0.1]}
    assert Sel.choose([rec, good], "kare") is good
    assert P._outcome([rec]) == (
        "best accuracy kare none; stopped at step 81 (not finite), the last finite weights kept; "
        "the trained NTK is not finite: no accuracy, never chosen"
    )


def test_driver_outputs_both_protocols_and_baselines(tmp_path, monkeypatch):
    root = _poisoned_dataset(tmp_path / "data")
    monkeypatch.setattr(P, "neural_trial", FakeTrial())
    logs = []
    s = _settings(root, baselines=["krr-rbf"])
    summary = E.run_uci(s, tmp_path / "run", log=logs.append)
    methods = ["kare", "after_kernel", "dnn", "krr-rbf"]
    assert summary["protocol"] == "validated" and summary["methods"] == methods
    for p in ("paper", "validated"):
        assert set(summary[p]) >= set(methods) and summary[p]["n_datasets"] == 1
    assert summary["kare"] == summary["validated"]["kare"]
    assert any("estimated total for 18 trainings" in line for line in logs)  # 6 grid + at most 3 × 4 fold trainings
    # a line per training: configuration, its best accuracy (the fake kare config lr 0.2 predicts class 1: 2 of 6
    # evaluation rows), time, count and time left
    per_config = [line for line in logs if " trainings, about " in line]
    assert len(per_config) == 6 + 8  # the kernel methods' folds are cached per (kind, config, fold): 2 × 4
    assert re.fullmatch(
        r"poison: kare depth 1 width 4 lr 0\.2: best accuracy kare 33\.3% in \d+\.\ds "
        r"\(2/18 trainings, about .+ left\)",
        per_config[1],
    )
    assert per_config[-1].startswith("poison: fold 4/4 dnn depth 1 width 4 lr ")
    # the table's line: its accuracies and the run's time left (size-weighted; none after the last table)
    assert any(re.search(r"^\[1/1\] poison: accuracy .*\(\d+s, .*about 0s left\)$", line) for line in logs)
    table = (tmp_path / "run" / "table.md").read_text()
    assert "| NTK-KARE | paper (optimistic) |" in table and "| KRR (RBF) | validated |" in table
    assert "| poison | 20 | 3 | 66.7 / 0.0 |" in table
    pair = next(p for p in summary["paired_vs_kare"] if p["b"] == "dnn")
    assert (pair["n"], pair["ties"], pair["protocol"]) == (1, 1, "validated")
    assert "- NTK-KARE beats DNN (MSE) on 0/1 data sets (1 tied)" in table
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert float(rows[0]["kare_paper"]) == pytest.approx(4 / 6) and float(rows[0]["kare_validated"]) == 0.0
    assert 0 <= float(rows[0]["krr-rbf_validated"]) <= 1
    unit = json.loads((tmp_path / "run" / "runs" / "poison.json").read_text())
    assert len(unit["accuracy"]["krr-rbf"]["fold_accuracy"]) == 4


def test_diverged_trainings_are_logged(tmp_path):
    root = _poisoned_dataset(tmp_path / "data")

    class Diverging(FakeTrial):
        def __call__(self, kind, *args, **kw):
            records = super().__call__(kind, *args, **kw)
            if kind == "kare":
                records[0]["stopped_at"] = 120
            return records

    logs = []
    clock = Cost.RunClock(18, logs.append)
    P.run_dataset(load_uci(root, "poison"), _settings(root), E.UCI_KARE_LRS, trial=Diverging(), clock=clock)
    per_training = [line for line in logs if "trainings, about" in line]
    kare_lines = [line for line in per_training if " kare depth " in line]
    assert len(kare_lines) == 3 + 4  # the grid's three and the four folds of the chosen one
    assert all("stopped at step 120 (not finite), the last finite weights kept" in line for line in kare_lines)
    assert not any("not finite" in line for line in per_training if " dnn depth " in line)


def _counted(logs):
    """(k, N) of every per-training progress line."""
    import re

    lines = [line for line in logs if "trainings, about" in line]
    return [tuple(map(int, re.search(r"\((\d+)/(\d+) trainings", line).groups())) for line in lines]


def test_the_clock_counts_the_fold_trainings_the_choices_need(tmp_path):
    root = _poisoned_dataset(tmp_path / "data")
    s = _settings(root)
    logs = []
    budget = Cost.trainings_per_dataset(s, E.UCI_KARE_LRS)
    assert budget == 6 + 4 * 3  # before the grid: four folds for NTK-KARE's, the DNN's and the after-kernel's choice
    ds = load_uci(root, "poison")
    rows = len(ds.x)
    clock = Cost.RunClock(budget, logs.append, Cost.dataset_cost(s, E.UCI_KARE_LRS, rows))
    trial = FakeTrial()
    P.run_dataset(ds, s, E.UCI_KARE_LRS, trial=trial, clock=clock)
    # the DNN and its after-kernel choose the same configuration: they share four fold trainings
    assert len(trial.calls) == 6 + 4 * 2
    counted = _counted(logs)
    assert counted[5] == (6, 18) and counted[6] == (7, 14)  # replanned once the choices are known
    assert counted[-1] == (14, 14) and clock.total == clock.done == 14
    assert clock.total_cost == pytest.approx(clock.cost_done)  # nothing left to do, nothing counted twice
    fold_cost = 4 * sum(Cost.training_cost(k, 1, 4, rows) for k in ("kare", "dnn"))
    grid_cost = sum(Cost.training_cost(k, 1, 4, rows) for k, *_ in Rc.uci_configs(s, E.UCI_KARE_LRS))
    assert clock.total_cost == pytest.approx(grid_cost + fold_cost)


def test_the_clock_counts_a_fold_fallback(tmp_path):
    root = _poisoned_dataset(tmp_path / "data")
    logs = []
    clock = Cost.RunClock(18, logs.append)
    trial = DivergingOnFolds({0.1: {1}})
    P.run_dataset(load_uci(root, "poison"), _settings(root), E.UCI_KARE_LRS, trial=trial, clock=clock)
    assert len(trial.calls) == 6 + 4 * 2 + 1  # fold 2's NTK-KARE retrained with the runner-up
    assert _counted(logs)[-1] == (15, 15) and clock.total == clock.done == 15


class DivergingOnFolds(FakeTrial):
    """KARE trainings of the given learning rates diverge (no finite KARE) on the given fold indices."""

    def __init__(self, diverge: dict):
        super().__init__()
        self.diverge, self.fold_calls = diverge, {}

    def __call__(self, kind, depth, width, lr, x_tr, y_tr, *args, **kw):
        records = super().__call__(kind, depth, width, lr, x_tr, y_tr, *args, **kw)
        if kind == "kare" and len(x_tr) == 12:  # a fold's training (the grid trains on 6 rows)
            fold = self.fold_calls[lr] = self.fold_calls.get(lr, -1) + 1
            if fold in self.diverge.get(lr, ()):
                records[0].update(kare=[None, None], accuracy=[None, None], _pred_pick=None)
        return records


def test_a_diverged_fold_falls_back_to_the_validation_runner_up(tmp_path):
    root = _poisoned_dataset(tmp_path / "data")
    logs = []
    trial = DivergingOnFolds({0.1: {1}})
    res = P.run_dataset(load_uci(root, "poison"), _settings(root), E.UCI_KARE_LRS, log=logs.append, trial=trial)
    kare = res["accuracy"]["kare"]
    # validation order: lr 0.1 (4/6), 0.2 (2/6), 0.3 (0/6); the fold's test rows (class 2) would favour lr 0.3
    assert kare["validated_config"]["lr"] == 0.1
    assert [c["lr"] for c in kare["fold_configs_used"]] == [0.1, 0.2, 0.1, 0.1]
    assert kare["fold_accuracy"] == [0.0] * 4 and kare["validated"] == 0.0
    assert [c["lr"] for c in trial.calls if c["kind"] == "kare" and c["n_train"] == 12] == [0.1, 0.1, 0.2, 0.1, 0.1]
    assert any("fold 2/4 kare depth 1 width 4 lr 0.1 gives no number" in line and "next" in line for line in logs)
    assert "fold_configs_used" not in res["accuracy"]["after_kernel"]


def test_a_fold_without_a_usable_configuration_has_no_number(tmp_path):
    root = _poisoned_dataset(tmp_path / "data")
    logs = []
    trial = DivergingOnFolds({0.1: {0}, 0.2: {0}, 0.3: {0}})
    res = P.run_dataset(load_uci(root, "poison"), _settings(root), E.UCI_KARE_LRS, log=logs.append, trial=trial)
    kare = res["accuracy"]["kare"]
    assert kare["validated"] is None and kare["fold_accuracy"][0] is None and kare["fold_configs_used"][0] is None
    assert kare["fold_accuracy"][1:] == [0.0] * 3
    assert any("lr 0.3 gives no number" in line and "no fallback left" in line for line in logs)
    assert res["accuracy"]["dnn"]["validated"] == 0.0  # other methods are not affected


def test_paper_protocol_output_is_labelled_optimistic(tmp_path, monkeypatch):
    root = _poisoned_dataset(tmp_path / "data")
    monkeypatch.setattr(P, "neural_trial", FakeTrial())
    summary = E.run_uci(_settings(root, protocol="paper"), tmp_path / "run", log=lambda m: None)
    assert "validated" not in summary and summary["kare"] == summary["paper"]["kare"]
    table = (tmp_path / "run" / "table.md").read_text()
    assert "paper (optimistic)" in table and "--protocol validated" in table and "| validated |" not in table


def _cli_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    return exc.value.code, capsys.readouterr().err


def test_cli_flags_reject_bad_values(tmp_path, capsys):
    base = ["reproduce", "uci", "--data-dir", str(UCI_DIR), "--out", str(tmp_path / "o")]
    code, err = _cli_error(base + ["--protocol", "honest"], capsys)
    assert code == 2 and "--protocol" in err and "validated" in err
    code, err = _cli_error(base + ["--baselines", "svc,svm"], capsys)
    assert code == 2 and "'svm'" in err and "krr-rbf" in err
    args = cli.build_parser().parse_args(base + ["--protocol", "validated", "--baselines", "svc,krr-rbf"])
    s = cli.make_settings(args)
    assert s["protocol"] == "validated" and s["baselines"] == ["svc", "krr-rbf"]
    assert cli.make_settings(cli.build_parser().parse_args(base))["protocol"] == "paper"


@pytest.mark.slow
def test_validated_protocol_end_to_end_real_training(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "reproduce",
        "uci",
        "--data-dir",
        str(UCI_DIR),
        "--datasets",
        "tiny3",
        "--depths",
        "1",
        "--widths",
        "4",
        "--kare-lrs",
        "1",
        "--dnn-lrs",
        "0.1",
        "--kare-steps",
        "2",
        "--dnn-steps",
        "2",
        "--ridges",
        "0.1,10",
        "--protocol",
        "validated",
        "--baselines",
        "krr-rbf,svc",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    unit = json.loads((out / "runs" / "tiny3.json").read_text())
    for m in ("kare", "after_kernel", "dnn", "krr-rbf", "svc"):
        assert 0 <= unit["accuracy"][m]["validated"] <= 1 and len(unit["accuracy"][m]["fold_accuracy"]) == 4


def test_no_finite_kare_gives_no_number():
    recs = [{"method": "kare", "depth": 1, "width": 4, "lr": 1.0, "accuracy": [0.5, 0.9], "kare": [None, float("inf")]}]
    assert Sel.kare_selected(recs, "kare")["accuracy"] is None
    assert Sel.choose(recs, "kare") is None


def test_ntk_init_is_kernel_ridge_with_the_untrained_networks_ntk():
    """The control trains nothing: its record is KRR with the NTK of the network KARE training starts from,
    checked against explicit per-example Jacobians, a float64 KARE by definition and a direct solve."""
    from oracles import kare_oracle, krr_predict_oracle, ntk_oracle

    from keras_kare.initializers import build_mlp

    rng = np.random.default_rng(1)
    x_tr, x_ev = rng.normal(size=(15, 3)).astype("float32"), rng.normal(size=(7, 3)).astype("float32")
    y_tr, y_ev = -np.ones((15, 3)), -np.ones((7, 3))
    y_tr[np.arange(15), rng.integers(0, 3, 15)] = 1.0
    y_ev[np.arange(7), rng.integers(0, 3, 7)] = 1.0
    ridges = [1e-2, 1e-1, 1.0, 10.0]
    s = {**E.UCI_DEFAULTS, "seed": 3, "ridges": ridges, "kernel": "summed_output", "kare_steps": 300}
    [rec] = P.neural_trial("ntk_init", 1, 8, 0.0, x_tr, y_tr, x_ev, y_ev, s)
    assert rec["method"] == "ntk_init" and (rec["depth"], rec["width"], rec["lr"]) == (1, 8, 0.0)
    assert "stopped_at" not in rec  # nothing was trained

    net = build_mlp(3, 1, 8, 3, seed=3)  # the initial weights of any seed-3 training of this architecture
    k = ntk_oracle(net, x_tr, kernel="summed_output")
    k = (k + k.T) / 2
    k_ev = ntk_oracle(net, x_ev, x_tr, kernel="summed_output")
    kare = [kare_oracle(k, y_tr, z, relative=True) for z in ridges]
    np.testing.assert_allclose(rec["kare"], kare, rtol=1e-3)  # float32 Gram against float64 oracle
    pick = int(np.argmin(kare))
    assert Sel.kare_pick(rec) == pick
    pred = krr_predict_oracle(k, k_ev, y_tr, ridges[pick] * np.trace(k) / 15**2)
    np.testing.assert_allclose(rec["_pred_pick"], pred, atol=1e-3 * np.abs(pred).max())
    assert Sel.validation_accuracy(rec) == pytest.approx(np.mean(pred.argmax(1) == y_ev.argmax(1)))
    other = build_mlp(3, 1, 8, 3, seed=4)  # the oracle can tell kernels apart: another draw differs
    assert np.abs(ntk_oracle(other, x_tr, kernel="summed_output") - k).max() > 1e-2 * np.abs(k).max()


def test_ntk_init_in_the_grid_one_per_architecture_and_without_the_paper_methods(tmp_path, monkeypatch):
    root = _poisoned_dataset(tmp_path / "data")
    s = _settings(root, depths=[1, 2], recipes=["ntk_init"])
    grid = list(Rc.uci_configs(s, E.UCI_KARE_LRS))
    assert [c for c in grid if c[0] == "ntk_init"] == [("ntk_init", 1, 4, 0.0), ("ntk_init", 2, 4, 0.0)]
    assert len(grid) == 2 * (3 + 3 + 1)
    assert Rc.methods(s) == ["kare", "ntk_init", "after_kernel", "dnn"]
    assert "ntk_init" in Rc.VALIDATED_RECIPES  # the control runs by default with --protocol validated

    fake = FakeTrial()
    monkeypatch.setattr(P, "neural_trial", fake)
    alone = _settings(root, recipes=["ntk_init"], paper_methods=False, baselines=["krr-rbf"])
    summary = E.run_uci(alone, tmp_path / "run", log=lambda m: None)
    assert {c["kind"] for c in fake.calls} == {"ntk_init"}
    assert len(fake.calls) == 1 + 4  # the grid's one architecture, then the four folds
    assert all(c["labels"] <= {0, 1} for c in fake.calls[:1])  # chosen on the validation half
    assert summary["methods"] == ["ntk_init", "krr-rbf"]
    assert summary["validated"]["ntk_init"]["mean_accuracy"] == pytest.approx(100 * 0.0)  # class 0: test folds are 2
    rows = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(rows[0]) == {
        "dataset", "n_train", "n_test", "n_classes",
        "ntk_init_paper", "ntk_init_validated", "krr-rbf_paper", "krr-rbf_validated",
    }  # fmt: skip
    assert not (tmp_path / "run" / "accuracy_kare_vs_after_kernel.png").exists()

    with pytest.raises(ValueError, match="name a recipe .* or a baseline"):
        E.run_uci(_settings(root, recipes=[], paper_methods=False), tmp_path / "r2", log=lambda m: None)
    with pytest.raises(ValueError, match="ensemble combines NTK-KARE and the after-kernel"):
        E.run_uci(_settings(root, recipes=["ensemble"], paper_methods=False), tmp_path / "r3", log=lambda m: None)
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()  # refused before any work
    args = ["reproduce", "uci", "--data-dir", str(UCI_DIR), "--out", str(tmp_path / "o"), "--recipes", "ntk_init"]
    assert cli.make_settings(cli.build_parser().parse_args(args))["paper_methods"] is True
    parsed = cli.build_parser().parse_args(args + ["--no-paper-methods"])
    assert cli.make_settings(parsed)["paper_methods"] is False


def _scripted_stopping(monkeypatch, values):
    """Every KernelRidgeEarlyStopping evaluation returns the next held-out MSE of ``values``."""
    from keras_kare.callbacks import KernelRidgeEarlyStopping

    sequence = iter(values)
    monkeypatch.setattr(KernelRidgeEarlyStopping, "evaluate", lambda self: {"mse": next(sequence), "ridge": 1.0})


def _assert_same_record(a, b):
    assert a["accuracy"] == pytest.approx(b["accuracy"], rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(a["kare"], b["kare"], rtol=1e-4)  # the same weights, float32 Gram matrices
    np.testing.assert_allclose(a["_pred_pick"], b["_pred_pick"], rtol=1e-4, atol=1e-5)


def test_kare_es0_keeps_the_initial_weights_when_no_training_step_beats_them(monkeypatch):
    """kare_es0's stopping rule counts the initial weights: when they stay best for ``ES_PATIENCE`` evaluations
    its record is the untrained control's kernel regression (best step 0); when a step beats them it is
    kare_es's record, step for step (same seed, same inner split, same trained weights)."""
    rng = np.random.default_rng(2)
    x_tr, x_ev = rng.normal(size=(20, 3)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    y_tr, y_ev = np.sign(x_tr[:, :1] + 0.1), np.sign(x_ev[:, :1] + 0.1)
    s = {**E.UCI_DEFAULTS, "seed": 5, "ridges": [1e-2, 1.0], "kernel": "summed_output", "kare_steps": 20}
    args = (1, 8, 1.0, x_tr, y_tr, x_ev, y_ev, s)
    [control] = P.neural_trial("ntk_init", 1, 8, 0.0, *args[3:])

    _scripted_stopping(monkeypatch, [1.0] + [2.0] * P.ES_PATIENCE)  # the initial weights, then worse ones
    [kept] = P.neural_trial("kare_es0", *args)
    assert kept["method"] == "kare_es0" and kept["best_step"] == 0
    _assert_same_record(kept, control)

    held = [3.0, 2.0, 2.5, 2.5, 2.5]  # trained: best at the second evaluation (step 4), then patience runs out
    _scripted_stopping(monkeypatch, held)
    [es] = P.neural_trial("kare_es", *args)
    _scripted_stopping(monkeypatch, [4.0] + held)  # the initial weights worse than every trained one
    [es0] = P.neural_trial("kare_es0", *args)
    assert es["best_step"] == es0["best_step"] == 4
    _assert_same_record(es0, es)
    assert np.abs(np.subtract(es["kare"], control["kare"])).max() > 1e-3 * np.abs(control["kare"]).max()


def test_dnn_es0_scores_the_initial_network_too(monkeypatch):
    """The DNN's rule with the same option: ``monitor_initial`` scores the initial weights (step 0)."""
    from keras_kare.reproduce import runner

    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 3)).astype("float32")
    y = np.sign(x[:, :1])
    s = {**E.UCI_DEFAULTS, "seed": 1, "ridges": [1.0], "kernel": "summed_output", "dnn_steps": 40}
    seen = {}
    original = runner.train_dnn

    def spy(*args, **kw):
        seen.update(kw)
        return original(*args, **kw)

    monkeypatch.setattr(runner, "train_dnn", spy)
    dnn, after = P.neural_trial("dnn_es0", 1, 8, 0.1, x, y, x[:5], y[:5], s)
    assert seen["monitor_initial"] is True and (dnn["method"], after["method"]) == ("dnn_es0", "after_kernel_es0")
    assert dnn["best_step"] == after["best_step"] and dnn["best_step"] % 4 == 0  # 16 rows, batch 32: 1 step a pass
    P.neural_trial("dnn_es", 1, 8, 0.1, x, y, x[:5], y[:5], s)
    assert seen["monitor_initial"] is False


def test_a_monitored_kare_grid_training_yields_the_papers_record_and_the_best_passes_record(monkeypatch):
    """kare_vs reads the paper's grid training: its ``kare`` record is an unmonitored training's, and its
    ``kare_vs`` record (the best scored weights) is a fresh training of the chosen passes: what a fold trains."""
    rng = np.random.default_rng(4)
    x_tr, x_ev = rng.normal(size=(20, 3)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    y_tr, y_ev = np.sign(x_tr[:, :1] + 0.1), np.sign(x_ev[:, :1] + 0.1)
    s = {**E.UCI_DEFAULTS, "seed": 5, "ridges": [1e-2, 1.0], "kernel": "summed_output", "kare_steps": 20}
    args = (1, 8, 1.0, x_tr, y_tr, x_ev, y_ev)
    [plain] = P.neural_trial("kare", *args, s)
    # 20 steps scored every 2 (and at the start): best at the third evaluation after the start, step 6
    _scripted_stopping(monkeypatch, [5.0, 4.0, 3.0, 1.0] + [2.0] * 7)
    final, chosen = P.neural_trial("kare", *args, {**s, "monitor": ["kare"]})
    assert (final["method"], chosen["method"], chosen["passes"]) == ("kare", "kare_vs", 6)
    _assert_same_record(final, plain)  # the monitor did not change the paper's training
    monkeypatch.undo()
    [fold] = P.neural_trial("kare_vs", *args, {**s, "passes": 6})
    assert fold["method"] == "kare_vs" and fold["passes"] == 6
    _assert_same_record(chosen, fold)
    assert np.abs(np.subtract(chosen["kare"], plain["kare"])).max() > 1e-3 * np.abs(plain["kare"]).max()
    # the initial weights are a candidate: best at the start means no training, the untrained NTK
    _scripted_stopping(monkeypatch, [1.0] + [2.0] * 10)
    _, start = P.neural_trial("kare", *args, {**s, "monitor": ["kare"]})
    [control] = P.neural_trial("ntk_init", 1, 8, 0.0, *args[3:], s)
    [zero] = P.neural_trial("kare_vs", *args, {**s, "passes": 0})
    assert start["passes"] == zero["passes"] == 0
    _assert_same_record(start, control)
    _assert_same_record(zero, control)


def test_a_monitored_dnn_grid_training_yields_the_papers_records_and_the_best_passes_records():
    """dnn_vs: the network's validation MSE is scored on the way without stopping; the ``dnn`` and
    ``after_kernel`` records are the final weights', the ``_vs`` ones those of the best scored pass, equal to a
    fresh training for that many passes (the same batches in the same order)."""
    from keras_kare.reproduce.runner import score

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = np.sign(x[:, :1])
    x_tr, y_tr, x_ev, y_ev = x[:24], y[:24], x[24:], y[24:]
    s = {**E.UCI_DEFAULTS, "seed": 1, "ridges": [1.0], "kernel": "summed_output", "dnn_steps": 40}
    args = (1, 8, 0.5, x_tr, y_tr, x_ev, y_ev)
    dnn, after = P.neural_trial("dnn", *args, s)
    m_dnn, m_after, vs_dnn, vs_after = P.neural_trial("dnn", *args, {**s, "monitor": ["dnn"]})
    methods = [r["method"] for r in (m_dnn, m_after, vs_dnn, vs_after)]
    assert methods == ["dnn", "after_kernel", "dnn_vs", "after_kernel_vs"]
    assert m_dnn["accuracy"] == dnn["accuracy"]
    _assert_same_record(m_after, after)
    passes = vs_dnn["passes"]
    assert passes == vs_after["passes"] and passes % 4 == 0 and 0 <= passes <= 40  # 10 evaluations of 4 passes
    fold_dnn, fold_after = P.neural_trial("dnn_vs", *args, {**s, "passes": passes})
    assert fold_dnn["accuracy"] == vs_dnn["accuracy"]
    _assert_same_record(fold_after, vs_after)
    # the chosen passes have the smallest validation MSE among the scored ones (trained afresh for each)
    import keras

    from keras_kare.initializers import build_mlp
    from keras_kare.reproduce.runner import train_dnn

    scores = []
    for k in range(0, 41, 4):
        keras.utils.set_random_seed(s["seed"])
        net = build_mlp(3, 1, 8, 1, seed=s["seed"])
        if k:
            net, _ = train_dnn(net, x_tr, y_tr, 0.5, k, 32, lambda m: None)
        scores.append(score(net.predict(x_ev, verbose=0), y_ev)[0])
    assert passes == 4 * int(np.argmin(scores))
