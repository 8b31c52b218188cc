"""``keras-kare reproduce ...`` end to end on tiny settings, and its bad-input behaviour."""

import gzip
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_kare.cli import main

REPO = Path(__file__).resolve().parents[1]
UCI_DIR = Path(__file__).parent / "fixtures" / "uci"
TINY = ["--kare-steps", "2", "--dnn-steps", "3", "--ridges", "0.01,1,100"]


def _idx(path: Path, array: np.ndarray):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_dir(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    labels = np.array([7, 9, 3] * 20)
    _idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (len(labels), 28, 28)))
    _idx(d / "t10k-labels-idx1-ubyte.gz", labels)
    return d


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def _check_outputs(out: Path, n_rows: int, seeds: int):
    for name in (
        "results.csv",
        "results.json",
        "summary.json",
        "table.md",
        "settings.json",
        "log.txt",
        "test_mse_vs_ridge.png",
    ):
        assert (out / name).is_file(), name
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == n_rows
    summary = json.loads((out / "summary.json").read_text())
    for key in ("best_test_mse", "selected_test_mse"):
        assert np.isfinite(summary["kare"][key]) and np.isfinite(summary["after_kernel"][key])
    assert np.isfinite(summary["dnn"]["test_mse"])
    assert summary["n_seeds"] == seeds and "settings" in summary
    assert (out / "results.csv").read_text().splitlines()[0].startswith("method,seed,ridge")
    assert "| NTK-KARE |" in (out / "table.md").read_text()
    return summary


@pytest.mark.slow
def test_reproduce_synthetic_tiny(tmp_path, capsys):
    out = tmp_path / "syn"
    argv = [
        "reproduce",
        "synthetic",
        "--n",
        "60",
        "--n-train",
        "40",
        "--width",
        "8",
        "--seeds",
        "2",
        "--gamma",
        "1.5",
        "--sigma",
        "0.1",
        "--out",
        str(out),
    ] + TINY
    code, err = _run(argv, capsys)
    assert code == 0, err
    summary = _check_outputs(out, n_rows=2 * (3 + 3 + 3 + 1), seeds=2)
    assert summary["settings"]["gamma"] == 1.5 and summary["settings"]["kare_lr"] == 100.0
    assert summary["paper"] == {"kare": 0.177, "after_kernel": 0.208, "dnn": 0.409}
    assert "[seed 1] done" in err and "NTK-KARE: step 2/2" in err
    # a finished run folder is never overwritten ...
    before = (out / "results.csv").read_bytes()
    code, err = _run(argv, capsys)
    assert code == 2 and "already holds results" in err and err.count("\n") == 1
    assert (out / "results.csv").read_bytes() == before
    # ... but can be resumed (nothing left to do) and refuses other settings
    code, err = _run(argv + ["--resume"], capsys)
    assert code == 0 and "already done" in err
    code, err = _run(argv[:-1] + ["0.1,1", "--resume"], capsys)
    assert code == 2 and "settings differ" in err and "ridges" in err


@pytest.mark.slow
def test_reproduce_mnist_tiny(tmp_path, capsys, mnist_dir):
    out = tmp_path / "mn"
    argv = [
        "reproduce",
        "mnist",
        "--data-dir",
        str(mnist_dir),
        "--n-train",
        "15",
        "--n-test",
        "15",
        "--depth",
        "1",
        "--width",
        "4",
        "--seeds",
        "1",
        "--out",
        str(out),
    ] + TINY
    code, err = _run(argv, capsys)
    assert code == 0, err
    summary = _check_outputs(out, n_rows=3 + 3 + 3 + 1, seeds=1)
    assert "disjoint" in err and "disjoint" in summary["data"]["note"]
    assert summary["settings"]["kare_lr"] == 10.0  # the paper's rule for depth <= 2
    assert 0 <= summary["kare"]["best_test_accuracy"] <= 1


@pytest.mark.slow
def test_reproduce_uci_tiny_and_resume(tmp_path, capsys):
    out = tmp_path / "uci_run"
    argv = [
        "reproduce",
        "uci",
        "--data-dir",
        str(UCI_DIR),
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
        "--out",
        str(out),
    ]
    code, err = _run(argv, capsys)
    assert code == 0, err
    out2 = out
    argv2 = argv
    summary = json.loads((out2 / "summary.json").read_text())
    assert summary["n_datasets"] == 2
    for m in ("kare", "after_kernel", "dnn"):
        assert set(summary[m]) >= {"friedman_rank", "mean_accuracy", "p90", "p95", "pma"}
    assert sum(summary[m]["friedman_rank"] for m in ("kare", "after_kernel", "dnn")) == pytest.approx(6.0)
    assert (out2 / "table.md").is_file() and (out2 / "results.csv").is_file()
    per = json.loads((out2 / "runs" / "tiny3.json").read_text())
    assert per["n_classes"] == 3 and 0 <= per["accuracy"]["kare"]["best"] <= 1
    # interrupted run: remove one data set's result and resume; only that one is recomputed
    (out2 / "runs" / "tiny3.json").unlink()
    code, err = _run(argv2, capsys)
    assert code == 2 and "--resume" in err
    code, err = _run(argv2 + ["--resume"], capsys)
    assert code == 0 and "tiny2: already done" in err and "tiny3: accuracy" in err
    code, err = _run(argv2[:-2] + ["--datasets", "tiny2", "--out", str(out), "--resume"], capsys)
    assert code == 2 and "settings differ" in err and "datasets" in err


# ------------------------------------------------------------------ bad input
def _one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("keras-kare: error:"), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_bad_uci_inputs(tmp_path, capsys):
    base = ["reproduce", "uci", "--quick", "--out", str(tmp_path / "o")]
    _one_line_error(
        *_run(base + ["--data-dir", str(UCI_DIR), "--datasets", "tiny2,nope"], capsys), "nope", str(UCI_DIR)
    )
    _one_line_error(*_run(base + ["--data-dir", str(tmp_path / "missing")], capsys), "missing", "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(*_run(base + ["--data-dir", str(empty)], capsys), "no UCI data sets found")
    bad = tmp_path / "bad"
    shutil.copytree(UCI_DIR, bad)
    table = bad / "tiny3" / "tiny3_R.dat"
    table.write_text(table.read_text().replace("\t0.1\t0\n", "\t0.1\n", 1))
    _one_line_error(*_run(base + ["--data-dir", str(bad)], capsys), str(table), "columns, expected 4")
    assert not (tmp_path / "o").exists()  # validation happens before the run folder is created


def test_bad_mnist_inputs(tmp_path, capsys, mnist_dir):
    base = ["reproduce", "mnist", "--quick", "--out", str(tmp_path / "o")]
    _one_line_error(*_run(base + ["--data-dir", str(tmp_path / "nope")], capsys), "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(*_run(base + ["--data-dir", str(empty)], capsys), "t10k-images-idx3-ubyte")
    labels = mnist_dir / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(60)))
    _one_line_error(*_run(base + ["--data-dir", str(mnist_dir)], capsys), str(labels), "truncated or corrupt")
    assert not (tmp_path / "o").exists()


def test_bad_flags_exit_nonzero(capsys):
    for argv in (
        ["reproduce", "imagenet"],
        ["reproduce", "synthetic", "--seeds", "0"],
        ["reproduce", "synthetic", "--ridges", "1,-2"],
        ["reproduce", "synthetic", "--gamma", "abc"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "error:" in err
    code, err = _run(["reproduce", "synthetic", "--n", "10", "--n-train", "10"], capsys)
    _one_line_error(code, err, "--n-train")


def test_console_module_runs_and_fails_cleanly(tmp_path):
    """``python -m keras_kare``: real process, non-zero status, one line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "keras_kare", "reproduce", "mnist", "--data-dir", str(tmp_path / "none")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "keras-kare: error:" in proc.stderr and str(tmp_path / "none") in proc.stderr


# ------------------------------------------------------------------ help, --resume, whole figures
def _subparsers(parser):
    """Every (sub)parser of the command line, depth first."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _subparsers(sub)


def test_every_option_help_states_its_default():
    from keras_kare.cli import build_parser

    parser = build_parser()
    checked = 0
    for p in _subparsers(parser):
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            wanted = "(required, no default)" if action.required else "(default: "
            assert action.help and wanted in action.help, (p.prog, action.option_strings, action.help)
            assert "default: None" not in action.help, (p.prog, action.option_strings)
            checked += 1
    assert checked > 60
    text = parser._subparsers._group_actions[0].choices["reproduce"]._subparsers._group_actions[0].choices["mnist"]
    helptext = " ".join(text.format_help().split())
    assert "KERAS_KARE_DATA" in helptext and "t10k-images-idx3-ubyte" in helptext and "Nothing is" in helptext
    assert "(default: 10 (seeds 0-9))" in helptext and "(default: 300)" in helptext


def test_resume_without_out_is_a_clear_error(capsys):
    for experiment in (["synthetic"], ["mnist"], ["uci", "--data-dir", str(UCI_DIR)]):
        _one_line_error(*_run(["reproduce", *experiment, "--resume"], capsys), "--resume needs --out")


def test_panels_and_networks_parse():
    from keras_kare.cli import _networks, _panels
    from keras_kare.reproduce.figure import NETWORK_PANELS, SYNTHETIC_PANELS, panel_folder

    assert _panels("all") == list(SYNTHETIC_PANELS) and len(SYNTHETIC_PANELS) == 6
    assert _panels("1:0, 1.5:0.1,1:0") == [(1.0, 0.0), (1.5, 0.1)]
    assert _networks("all") == list(NETWORK_PANELS) and len(NETWORK_PANELS) == 6
    assert _networks("4x128,2X32") == [(4, 128), (2, 32)]
    assert [panel_folder("synthetic", p) for p in SYNTHETIC_PANELS] == [
        "gamma1_sigma0",
        "gamma1.25_sigma0",
        "gamma1.5_sigma0",
        "gamma1_sigma0.1",
        "gamma1.25_sigma0.1",
        "gamma1.5_sigma0.1",
    ]
    assert panel_folder("mnist", (4, 128)) == "depth4_width128"


def test_bad_panel_flags(capsys):
    for argv in (
        ["reproduce", "synthetic", "--panels", "1"],
        ["reproduce", "synthetic", "--panels", "1:-1"],
        ["reproduce", "mnist", "--networks", "4by128"],
        ["reproduce", "mnist", "--networks", "0x32"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "expected 'all' or" in capsys.readouterr().err
    _one_line_error(*_run(["reproduce", "synthetic", "--panels", "all", "--gamma", "1"], capsys), "--gamma")
    _one_line_error(*_run(["reproduce", "mnist", "--networks", "all", "--width", "8"], capsys), "--width")


TINY_SYN = ["--n", "60", "--n-train", "40", "--width", "8", "--seeds", "3"] + TINY


def _fake_panel_run(settings, folder, resume=False, log=print):
    """Stands in for a single-panel driver: a real run folder (settings, seeds, summary) with made-up errors."""
    from keras_kare.reproduce import results as R

    folder = R.prepare_run_dir(folder, settings, resume)
    rng = np.random.default_rng(int(10 * settings["gamma"] + 100 * settings["sigma"]))
    rows = []
    for seed in settings["seeds"]:
        seed_rows = []
        for method, scale in (("kare", 0.05), ("after_kernel", 0.1), ("ntk_init", 0.2)):
            for ridge in settings["ridges"]:
                mse = scale * (1 + rng.random()) * (1 + abs(np.log10(ridge)))
                seed_rows.append({"method": method, "seed": seed, "ridge": ridge, "test_mse": mse, "kare": mse})
        seed_rows.append({"method": "dnn", "seed": seed, "ridge": None, "test_mse": 0.3 + 0.1 * rng.random()})
        R.save_unit(folder, f"seed_{seed}", {"seed": seed, "seconds": 2.0, "rows": seed_rows})
        rows += seed_rows
    return R.write_summary(folder, rows, settings)


def test_whole_figure_writes_panel_folders_and_aggregates(tmp_path, capsys, monkeypatch):
    """--panels: one single-run folder per panel, then the grid's table/summary/figure; --resume only aggregates."""
    from keras_kare.reproduce import experiments as E
    from keras_kare.reproduce import figure as F

    monkeypatch.setattr(E, "run_synthetic", _fake_panel_run)
    out = tmp_path / "fig1"
    code, err = _run(["reproduce", "synthetic", "--panels", "1:0,1.5:0.1", "--out", str(out), *TINY_SYN], capsys)
    assert code == 0, err
    for folder in ("gamma1_sigma0", "gamma1.5_sigma0.1"):
        assert (out / folder / "summary.json").is_file() and len(list((out / folder / "runs").iterdir())) == 3
    # each panel folder holds exactly the settings the single-panel command stores
    single = tmp_path / "single"
    code, err = _run(
        ["reproduce", "synthetic", "--gamma", "1.5", "--sigma", "0.1", "--out", str(single), *TINY_SYN], capsys
    )
    assert code == 0, err
    assert (single / "settings.json").read_bytes() == (out / "gamma1.5_sigma0.1" / "settings.json").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    assert [p["folder"] for p in summary["panels"]] == ["gamma1_sigma0", "gamma1.5_sigma0.1"]
    first = summary["panels"][0]
    assert first["paper"] == {"kare": 0.032, "after_kernel": 0.109, "dnn": 0.140}
    assert first["ordering"] == ["kare", "after_kernel", "dnn"] and first["ordering_held"] is True
    assert first["pairs"]["dnn"]["wins_a"] == 3 and first["pairs"]["dnn"]["sign_test_p"] == pytest.approx(0.25)
    assert first["seed_seconds"] == pytest.approx(6.0)
    assert "ntk_init" not in first["ordering"] and first["control"]["value"] > 0.2  # beside the paper's three
    assert first["pairs"]["ntk_init"]["wins_a"] == 3  # NTK-KARE (≤ 0.1 at its best ridge) beats the control
    table = (out / "table.md").read_text()
    assert "| γ=1, σ=0 |" in table and "0.032 / 0.109 / 0.140" in table and "3/3, p = 0.25" in table
    control = f"| {first['control']['value']:.3f} ± {first['control']['se']:.3f} | 3/3, p = 0.25 |"
    assert control in table.splitlines()[4]
    assert (out / "test_mse_vs_ridge.png").is_file()
    # a finished figure folder is not overwritten without --resume ...
    argv = ["reproduce", "synthetic", "--panels", "1:0,1.5:0.1", "--out", str(out), *TINY_SYN]
    _one_line_error(*_run(argv, capsys), "already holds results")

    # ... with --resume its complete panels are reused as they are (no training), and the figure re-aggregated
    def no_training(*args, **kwargs):
        raise AssertionError("a complete panel was run again")

    monkeypatch.setattr(E, "run_synthetic", no_training)
    monkeypatch.setattr(F, "plot_figure", lambda *args: None)  # drawn above; matplotlib is slow on a busy CPU
    (out / "table.md").unlink()
    code, err = _run(argv + ["--resume"], capsys)
    assert code == 0 and "complete, reused as it is" in err and (out / "table.md").is_file()
    # other settings than a panel folder's are refused before any work
    _one_line_error(*_run(argv[:-1] + ["0.1,1", "--resume"], capsys), "settings differ", "ridges")


def test_make_settings_public_entry_point():
    from keras_kare.reproduce import make_settings

    s = make_settings("mnist", quick=True, depth=2, data_dir=Path("d"))
    assert s["depth"] == 2 and s["seeds"] == [0] and s["data_dir"] == "d" and s["quick"] is True
    with pytest.raises(TypeError, match="gama"):
        make_settings("synthetic", gama=1.0)
    with pytest.raises(ValueError, match="imagenet"):
        make_settings("imagenet")


@pytest.mark.slow
def test_whole_figure_end_to_end_tiny(tmp_path, capsys, mnist_dir):
    """Real training: two tiny networks of the MNIST figure, each folder the single-network run's."""
    out = tmp_path / "fig2"
    argv = [
        "reproduce",
        "mnist",
        "--networks",
        "1x4,2x4",
        "--data-dir",
        str(mnist_dir),
        "--n-train",
        "15",
        "--n-test",
        "15",
        "--seeds",
        "2",
        "--out",
        str(out),
    ] + TINY
    code, err = _run(argv, capsys)
    assert code == 0, err
    for folder in ("depth1_width4", "depth2_width4"):
        _check_outputs(out / folder, n_rows=2 * (3 + 3 + 3 + 1), seeds=2)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["panels"]) == 2 and "disjoint" in (out / "table.md").read_text()
