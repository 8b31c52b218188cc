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
    summary = _check_outputs(out, n_rows=2 * (3 + 3 + 1), seeds=2)
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
    summary = _check_outputs(out, n_rows=3 + 3 + 1, seeds=1)
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
