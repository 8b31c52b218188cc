"""``keras-kare`` command line (also ``python -m keras_kare``).

    keras-kare reproduce synthetic [--gamma 1 --sigma 0 --seeds 10 ...]
    keras-kare reproduce mnist [--depth 4 --width 128 --data-dir DIR ...]
    keras-kare reproduce uci --data-dir DIR [--datasets a,b ...]

Defaults are the paper's settings (Schwab, Kelly, Malamud, Xu 2025); ``--quick``
shrinks seeds/steps/sizes to a few minutes on a laptop CPU. Results go to
``--out DIR`` (default ``results/<experiment>-<time>``), which is never
overwritten: ``--resume`` continues an interrupted run with the same settings.
Bad input ends with a one-line error and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path
from typing import Optional

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class CLIError(Exception):
    """Bad command-line input detected before any work."""


# ------------------------------------------------------------------ parsing helpers
def _floats(text: str) -> list[float]:
    try:
        vals = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, received {text!r}") from None
    if not vals or not all(math.isfinite(v) and v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive finite numbers, received {text!r}")
    return vals


def _ints(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, received {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, received {text!r}")
    return vals


def _seeds(text: str) -> list[int]:
    """``5`` → seeds 0..4; ``3,7`` → seeds 3 and 7."""
    try:
        if "," in text:
            vals = [int(t) for t in text.split(",") if t.strip()]
            if min(vals) < 0 or len(set(vals)) != len(vals):
                raise ValueError
            return vals
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seeds (e.g. 5) or distinct non-negative seeds (e.g. 0,3), received {text!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"the number of seeds must be >= 1, received {text!r}")
    return list(range(n))


def _number(kind, minimum, strict: bool, what: str):
    """An argparse ``type`` parsing ``kind`` and requiring a finite value > (or >=) ``minimum``."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}") from None
        if not (math.isfinite(v) and (v > minimum if strict else v >= minimum)):
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
        return v

    return parse


_pos_float = _number(float, 0, True, "a positive number")
_nonneg_float = _number(float, 0, False, "a number >= 0")


def _fraction(text: str) -> float:
    value = _pos_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), received {text!r}")
    return value


_pos_int = _number(int, 1, False, "an integer >= 1")


def _names(text: str) -> list[str]:
    vals = [t.strip() for t in text.split(",") if t.strip()]
    if not vals:
        raise argparse.ArgumentTypeError("expected comma-separated data set names")
    return vals


def _baseline_names(text: str) -> list[str]:
    from keras_kare.reproduce.baselines import check_baselines

    try:
        return check_baselines(_names(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _common(p: argparse.ArgumentParser, single_net: bool = True):
    g = p.add_argument_group("run")
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: results/<experiment>-<time>); never overwritten",
    )
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (same settings)")
    g.add_argument("--quick", action="store_true", help="few seeds/steps: minutes on a CPU (not the paper's settings)")
    g.add_argument("--debug", action="store_true", help="show tracebacks and TensorFlow's start-up log")
    g.add_argument("--ridges", type=_floats, help="relative ridge grid λ̃ for KRR, comma-separated")
    g.add_argument("--kare-ridge", type=_pos_float, help="KARE's ridge z (paper 0.1, absolute)")
    g.add_argument("--kare-steps", type=_pos_int, help="KARE SGD steps (passes over the data)")
    g.add_argument("--dnn-steps", type=_pos_int, help="DNN SGD steps (passes over the data)")
    g.add_argument(
        "--kernel", choices=("summed_output", "trace"), help="NTK of multi-output nets (paper: summed_output)"
    )
    if single_net:
        g.add_argument("--seeds", type=_seeds, help="number of seeds (0..N-1) or a comma list")
        g.add_argument("--depth", type=_pos_int, help="hidden layers")
        g.add_argument("--width", type=_pos_int, help="hidden units per layer")
        g.add_argument("--kare-lr", type=_pos_float, help="SGD learning rate of NTK-KARE")
        g.add_argument("--dnn-lr", type=_pos_float, help="SGD learning rate of the DNN")
        g.add_argument(
            "--batch-size", type=_pos_int, help="batch size (default: full batch up to 5000 examples, else 32)"
        )
        g.add_argument(
            "--protocol",
            choices=("paper", "validated"),
            help="paper: the ridge is picked on the test set (optimistic); validated: every method trains "
            "on the training rows minus a held-out fraction, on which the ridge is picked",
        )
        g.add_argument(
            "--validation-fraction",
            type=_fraction,
            help="share of the training rows held out by --protocol validated (default 0.2)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-kare", description="Train NTKs with KARE (Keras 3 / TensorFlow).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    rep = sub.add_parser("reproduce", help="reproduce the paper's experiments")
    exp = rep.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    exp.required = True

    p = exp.add_parser(
        "synthetic",
        help="Figure 1: single-index regression (built-in data)",
        description="Figure 1: y = cos(γxᵀw)/(1+exp(γxᵀw)) + σε, d=10, 800/200 train/test.",
    )
    _common(p)
    p.add_argument("--gamma", type=_pos_float, help="index scale γ (paper 1, 1.25, 1.5)")
    p.add_argument("--sigma", type=_nonneg_float, help="noise std σ (paper 0, 0.1)")
    p.add_argument("--n", type=_pos_int, help="total samples (paper 1000)")
    p.add_argument("--n-train", type=_pos_int, help="training samples, the first n-train (paper 800)")
    p.add_argument("--dim", type=_pos_int, dest="d", help="input dimension (paper 10)")

    p = exp.add_parser(
        "mnist",
        help="Figure 2: MNIST 7 vs 9",
        description="Figure 2: MNIST 7 (+1) vs 9 (−1), 2-pixel crop, per-image centring, 1000/1000.",
    )
    _common(p)
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder with MNIST IDX files (default: $KERAS_KARE_DATA/mnist, else a prepared TFDS mnist)",
    )
    p.add_argument("--n-train", type=_pos_int, help="training examples (paper 1000)")
    p.add_argument("--n-test", type=_pos_int, help="test examples (paper 1000)")

    p = exp.add_parser(
        "uci",
        help="Table 1: the 121 UCI data sets (user-provided)",
        description="Table 1: Fernández-Delgado et al.'s UCI collection in its published layout.",
    )
    _common(p, single_net=False)
    p.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="folder holding <name>/<name>_R.dat, conxuntos.dat, conxuntos_kfold.dat",
    )
    p.add_argument("--datasets", type=_names, help="comma-separated subset of data set names")
    p.add_argument("--depths", type=_ints, help="hidden-layer counts of the grid (paper 1..5)")
    p.add_argument("--widths", type=_ints, help="widths of the grid (paper 32..512)")
    p.add_argument("--kare-lrs", type=_floats, help="KARE learning rates (default: the paper's per-depth grid)")
    p.add_argument("--dnn-lrs", type=_floats, help="DNN learning rates (paper 0.1..1e-4)")
    p.add_argument("--dnn-batch-size", type=_pos_int, help="DNN batch size (paper 32)")
    p.add_argument("--seed", type=int, help="seed (paper 0)")
    p.add_argument(
        "--protocol",
        choices=("paper", "validated"),
        help="paper: best configuration and ridge picked on the evaluation split (optimistic, default); "
        "validated: configuration picked on conxuntos.dat's validation split, accuracy on the 4 "
        "conxuntos_kfold.dat test folds",
    )
    p.add_argument(
        "--baselines",
        type=_baseline_names,
        help="classical baselines on the same splits, comma-separated: svc, rf, krr-rbf "
        "(svc and rf need scikit-learn: pip install 'keras-kare[reproduce]')",
    )
    return parser


# ------------------------------------------------------------------ settings
_NOT_SETTINGS = {"command", "experiment", "out", "resume", "quick", "debug"}


def make_settings(args: argparse.Namespace) -> dict:
    """Paper defaults, then ``--quick`` overrides, then explicit flags."""
    from keras_kare.reproduce import experiments as E

    defaults, quick = {
        "synthetic": (E.SYNTHETIC_DEFAULTS, E.SYNTHETIC_QUICK),
        "mnist": (E.MNIST_DEFAULTS, E.MNIST_QUICK),
        "uci": (E.UCI_DEFAULTS, E.UCI_QUICK),
    }[args.experiment]
    settings = dict(defaults)
    if args.quick:
        settings.update(quick)
    for key, value in vars(args).items():
        if key not in _NOT_SETTINGS and value is not None:
            settings[key] = value
    for key in ("data_dir",):
        if settings.get(key) is not None:
            settings[key] = str(settings[key])
    if args.experiment == "synthetic" and not settings["n_train"] < settings["n"]:
        raise CLIError(f"--n-train ({settings['n_train']}) must be smaller than --n ({settings['n']}).")
    if args.experiment in ("mnist", "uci") and settings.get("data_dir") is not None:
        if not Path(settings["data_dir"]).is_dir():
            raise CLIError(f"{settings['data_dir']}: --data-dir does not exist or is not a folder.")
    if settings.get("validation_fraction") is not None and settings.get("protocol") != "validated":
        raise CLIError("--validation-fraction applies to --protocol validated only.")
    settings["quick"] = bool(args.quick)
    return settings


def default_out(experiment: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("results") / f"{experiment}-{stamp}"
    k = 1
    while out.exists():
        out = Path("results") / f"{experiment}-{stamp}-{k}"
        k += 1
    return out


class _Logger:
    """Timestamped progress lines on stderr, mirrored to DIR/log.txt once the run folder exists."""

    def __init__(self, out: Path):
        self.out = out
        self.t0 = time.time()

    def __call__(self, msg: str):
        line = f"[keras-kare {time.strftime('%H:%M:%S')} +{time.time() - self.t0:.0f}s] {msg}"
        print(line, file=sys.stderr, flush=True)
        if (self.out / "runs").is_dir():
            with (self.out / "log.txt").open("a") as f:
                f.write(line + "\n")


def _quiet_tensorflow(debug: bool) -> None:
    """TensorFlow's start-up and Python-side logs off unless ``--debug`` (see ``keras_kare._startup``)."""
    from keras_kare._startup import quiet_python_logs, tensorflow_startup

    if debug:
        return
    with tensorflow_startup(debug=False):  # loads TensorFlow quietly if the package has not yet
        pass
    quiet_python_logs()


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``keras-kare``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 and a one-line usage error on bad flags
    _quiet_tensorflow(args.debug)
    try:
        from keras_kare.datasets.errors import DatasetError
        from keras_kare.reproduce import experiments as E

        settings = make_settings(args)
        out = args.out if args.out is not None else default_out(args.experiment)
        log = _Logger(out)
        run = {"synthetic": E.run_synthetic, "mnist": E.run_mnist, "uci": E.run_uci}[args.experiment]
        t0 = time.time()
        run(settings, out, resume=args.resume, log=log)
        log(f"done in {time.time() - t0:.0f}s; results in {out}")
        return 0
    except KeyboardInterrupt:
        print(
            "keras-kare: interrupted; finished seeds/data sets are kept, continue with --resume and the same --out.",
            file=sys.stderr,
        )
        return 130
    except (CLIError, DatasetError) as err:
        if args.debug:
            raise
        print(f"keras-kare: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - one line for the user, traceback with --debug
        if args.debug:
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"keras-kare: error: {type(err).__name__}: {msg} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
