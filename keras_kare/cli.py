"""``keras-kare`` command line (also ``python -m keras_kare``).

    keras-kare reproduce synthetic [--gamma 1 --sigma 0 --seeds 10 ...]
    keras-kare reproduce synthetic --panels all --out DIR     (Figure 1's six panels, one folder each)
    keras-kare reproduce mnist [--depth 4 --width 128 --data-dir DIR ...]
    keras-kare reproduce mnist --networks all --data-dir DIR --out OUT   (Figure 2's six networks)
    keras-kare reproduce higgs --data-dir DIR [...]           (HIGGS.csv(.gz) or Kaggle training.csv)
    keras-kare reproduce uci --data-dir DIR [--datasets a,b ...]

Defaults are the paper's settings (Schwab, Kelly, Malamud, Xu 2025); ``--quick``
shrinks seeds/steps/sizes to a few minutes on a laptop CPU. Results go to
``--out DIR`` (default ``results/<experiment>-<time>``), which is never
overwritten: ``--resume`` continues an interrupted run with the same settings
(and needs ``--out``). Every option's ``--help`` states its default.
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


def _recipe_names(text: str) -> list[str]:
    from keras_kare.reproduce.uci_recipes import check_recipes

    if text.strip() == "none":
        return []
    try:
        return check_recipes(_names(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _panels(text: str) -> list[tuple[float, float]]:
    """``all`` → Figure 1's six panels; ``1:0,1.5:0.1`` → those (γ, σ) panels."""
    from keras_kare.reproduce.figure import SYNTHETIC_PANELS

    if text.strip() == "all":
        return list(SYNTHETIC_PANELS)
    try:
        panels = [tuple(float(v) for v in item.split(":")) for item in text.replace(" ", "").split(",") if item]
        if not panels or any(len(p) != 2 or not all(map(math.isfinite, p)) or p[0] <= 0 or p[1] < 0 for p in panels):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or comma-separated GAMMA:SIGMA pairs (e.g. 1:0,1.5:0.1), received {text!r}"
        ) from None
    return list(dict.fromkeys(panels))


def _networks(text: str) -> list[tuple[int, int]]:
    """``all`` → Figure 2's six networks; ``2x32,4x128`` → those (depth, width) networks."""
    from keras_kare.reproduce.figure import NETWORK_PANELS

    if text.strip() == "all":
        return list(NETWORK_PANELS)
    try:
        nets = [tuple(int(v) for v in item.lower().split("x")) for item in text.replace(" ", "").split(",") if item]
        if not nets or any(len(n) != 2 or min(n) < 1 for n in nets):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or comma-separated DEPTHxWIDTH networks (e.g. 2x32,4x128), received {text!r}"
        ) from None
    return list(dict.fromkeys(nets))


def _show(value) -> str:
    """A default as the user would type it."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) for v in value) and list(value) == list(range(len(value))):
            return f"{len(value)} (seeds 0-{len(value) - 1})" if len(value) > 1 else "1 (seed 0)"
        return ",".join(_show(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _help(text: str, defaults: dict, key: str, when_none: Optional[str] = None) -> str:
    """``text (default: <the paper's value of key>)``; ``when_none`` says what a None default means."""
    value = defaults.get(key)
    shown = when_none if value is None and when_none else _show(value)
    return f"{text} (default: {shown})"


_FLAG_DEFAULT = " (default: off)"


def _common(p: argparse.ArgumentParser, defaults: dict, quick: dict, single_net: bool = True):
    """Options every experiment shares; helps show the paper's defaults taken from ``defaults``."""
    g = p.add_argument_group("run")
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder, never overwritten (default: results/<experiment>-<date>-<time>)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run (or re-aggregate a finished one) in --out, which it needs; the stored "
        "settings must be this command's" + _FLAG_DEFAULT,
    )
    g.add_argument(
        "--quick",
        action="store_true",
        help="few seeds/steps, minutes on a CPU, not the paper's settings: "
        + ", ".join(f"{k.replace('_', '-')} {_show(v)}" for k, v in quick.items())
        + _FLAG_DEFAULT,
    )
    g.add_argument("--debug", action="store_true", help="show tracebacks and TensorFlow's start-up log" + _FLAG_DEFAULT)
    g.add_argument(
        "--ridges", type=_floats, help=_help("relative ridge grid λ̃ for KRR, comma-separated", defaults, "ridges")
    )
    g.add_argument("--kare-ridge", type=_pos_float, help=_help("KARE's ridge z (absolute)", defaults, "kare_ridge"))
    g.add_argument(
        "--kare-steps", type=_pos_int, help=_help("KARE SGD steps (passes over the data)", defaults, "kare_steps")
    )
    g.add_argument(
        "--dnn-steps", type=_pos_int, help=_help("DNN SGD steps (passes over the data)", defaults, "dnn_steps")
    )
    g.add_argument(
        "--kernel",
        choices=("summed_output", "trace"),
        help=_help("NTK of multi-output nets (the paper differentiates the summed output)", defaults, "kernel"),
    )
    if single_net:
        g.add_argument(
            "--seeds", type=_seeds, help=_help("number of seeds (0..N-1) or a comma list", defaults, "seeds")
        )
        g.add_argument("--depth", type=_pos_int, help=_help("hidden layers", defaults, "depth"))
        g.add_argument("--width", type=_pos_int, help=_help("hidden units per layer", defaults, "width"))
        g.add_argument(
            "--kare-lr",
            type=_pos_float,
            help=_help(
                "SGD learning rate of NTK-KARE", defaults, "kare_lr", "10 up to depth 2, 1 deeper (the paper's)"
            ),
        )
        g.add_argument("--dnn-lr", type=_pos_float, help=_help("SGD learning rate of the DNN", defaults, "dnn_lr"))
        g.add_argument(
            "--batch-size",
            type=_pos_int,
            help=_help("batch size", defaults, "batch_size", "full batch up to 5000 examples, else 32"),
        )
        g.add_argument(
            "--protocol",
            choices=("paper", "validated"),
            help=_help(
                "paper: the ridge is picked on the test set (optimistic); validated: every method trains "
                "on the training rows minus a held-out fraction, on which the ridge is picked",
                defaults,
                "protocol",
            ),
        )
        g.add_argument(
            "--validation-fraction",
            type=_fraction,
            help=_help(
                "share of the training rows held out by --protocol validated", defaults, "validation_fraction", "0.2"
            ),
        )


MNIST_DATA_HELP = """\
data: MNIST's IDX files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], and
optionally the train-* pair), as published by LeCun, Cortes and Burges (e.g. the mirror
https://ossci-datasets.s3.amazonaws.com/mnist/). Put them in a folder and pass --data-dir,
or set KERAS_KARE_DATA to a folder whose mnist/ sub-folder holds them; without either, a
tensorflow-datasets 'mnist' already prepared on this machine is used. Nothing is
downloaded. With the test set only, train and test are disjoint draws from it (the run
says so); the paper draws train from MNIST's training set.

--networks all runs the six networks (depth 2, 4 × width 32, 64, 128) into
DIR/depth<d>_width<w> (each the folder of --depth d --width w --out that folder), then
writes the 2×3 figure, table.md and summary.json in DIR; --resume reuses finished
sub-folders, so on a folder of finished runs it only aggregates."""

HIGGS_DATA_HELP = """\
data: a Higgs CSV file you provide, nothing is downloaded. Either the UCI HIGGS file
(HIGGS.csv or HIGGS.csv.gz from the UCI Machine Learning Repository, Baldi et al. 2014:
no header, label 1/0 then 28 features) or the Kaggle / ATLAS Higgs challenge file
(training.csv, or atlas-higgs-challenge-2014-v2.csv from the ATLAS open data: EventId,
30 features, Weight, Label s/b). Put it in a folder and pass --data-dir (or the file),
or set KERAS_KARE_DATA to a folder whose higgs/ sub-folder holds it. EventId and the
class-dependent Weight column (kept as a feature by the paper's loader, which leaks the
label) are dropped; -999 (missing) entries are replaced by training means; features are
standardised on the training draw. Settings are the MNIST panel's (the paper states no
others). --networks works as for mnist."""

UCI_DATA_HELP = """\
data: the 121 UCI data sets as preprocessed by Fernández-Delgado et al. (JMLR 2014), in
their published layout (<name>/<name>_R.dat, conxuntos.dat, conxuntos_kfold.dat; the
archive distributed with their paper, also used by Arora et al. 2020). Pass its folder
with --data-dir (e.g. "$KERAS_KARE_DATA/uci"). Nothing is downloaded."""

SYNTHETIC_HELP = """\
data: built in (keras_kare.datasets.make_single_index, the authors' draws seed for seed).

--panels all runs the six panels (γ 1, 1.25, 1.5 × σ 0, 0.1) into DIR/gamma<γ>_sigma<σ>
(each the folder of --gamma γ --sigma σ --out that folder), then writes the 2×3 figure,
table.md and summary.json in DIR; --resume reuses finished sub-folders, so on a folder of
finished runs it only aggregates."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and epilogs; every option's help states its default itself."""


def build_parser() -> argparse.ArgumentParser:
    from keras_kare.reproduce import experiments as E

    fmt = {"formatter_class": _HelpFormatter}
    parser = argparse.ArgumentParser(
        prog="keras-kare", description="Train NTKs with KARE (Keras 3 / TensorFlow).", **fmt
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    rep = sub.add_parser("reproduce", help="reproduce the paper's experiments", **fmt)
    exp = rep.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    exp.required = True

    d = E.SYNTHETIC_DEFAULTS
    p = exp.add_parser(
        "synthetic",
        help="Figure 1: single-index regression (built-in data)",
        description="Figure 1: y = cos(γxᵀw)/(1+exp(γxᵀw)) + σε, d=10, 800/200 train/test.",
        epilog=SYNTHETIC_HELP,
        **fmt,
    )
    _common(p, d, E.SYNTHETIC_QUICK)
    p.add_argument("--gamma", type=_pos_float, help=_help("index scale γ (paper 1, 1.25, 1.5)", d, "gamma"))
    p.add_argument("--sigma", type=_nonneg_float, help=_help("noise std σ (paper 0, 0.1)", d, "sigma"))
    p.add_argument(
        "--panels",
        type=_panels,
        help="several panels into one folder: 'all' (the six of Figure 1) or GAMMA:SIGMA pairs such as "
        "1:0,1.5:0.1; replaces --gamma/--sigma (default: one panel, --gamma/--sigma)",
    )
    p.add_argument("--n", type=_pos_int, help=_help("total samples", d, "n"))
    p.add_argument("--n-train", type=_pos_int, help=_help("training samples, the first n-train", d, "n_train"))
    p.add_argument("--dim", type=_pos_int, dest="d", help=_help("input dimension", d, "d"))

    for name, defaults, what, epilog in (
        ("mnist", E.MNIST_DEFAULTS, "Figure 2: MNIST 7 vs 9", MNIST_DATA_HELP),
        ("higgs", E.HIGGS_DEFAULTS, "Figure 2: Higgs signal vs background (user-provided CSV)", HIGGS_DATA_HELP),
    ):
        p = exp.add_parser(
            name,
            help=what,
            description=what
            + (
                ": MNIST 7 (+1) vs 9 (−1), 2-pixel crop, per-image centring, 1000/1000 per seed."
                if name == "mnist"
                else ": signal (+1) vs background (−1), 1000/1000 per seed."
            ),
            epilog=epilog,
            **fmt,
        )
        _common(p, defaults, E.DEFAULTS[name][1])
        p.add_argument(
            "--networks",
            type=_networks,
            help="several networks into one folder: 'all' (the six of Figure 2) or DEPTHxWIDTH such as 2x32,4x128; "
            "replaces --depth/--width (default: one network, --depth/--width)",
        )
        p.add_argument(
            "--data-dir",
            type=Path,
            help=f"folder with the {'MNIST IDX files' if name == 'mnist' else 'Higgs CSV file (or the file)'} "
            f"(default: $KERAS_KARE_DATA/{name}"
            + (", else a prepared tensorflow-datasets mnist)" if name == "mnist" else ")"),
        )
        p.add_argument("--n-train", type=_pos_int, help=_help("training examples per seed", defaults, "n_train"))
        p.add_argument("--n-test", type=_pos_int, help=_help("test examples per seed", defaults, "n_test"))
        if name == "higgs":
            p.add_argument(
                "--max-rows",
                type=_pos_int,
                help=_help("rows read from the start of the file, the pool of the draws", defaults, "max_rows"),
            )

    d = E.UCI_DEFAULTS
    p = exp.add_parser(
        "uci",
        help="Table 1: the 121 UCI data sets (user-provided)",
        description="Table 1: Fernández-Delgado et al.'s UCI collection in its published layout.",
        epilog=UCI_DATA_HELP,
        **fmt,
    )
    _common(p, d, E.UCI_QUICK, single_net=False)
    p.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="folder holding <name>/<name>_R.dat, conxuntos.dat, conxuntos_kfold.dat (required, no default)",
    )
    p.add_argument(
        "--datasets", type=_names, help=_help("comma-separated subset of data set names", d, "datasets", "all of them")
    )
    p.add_argument("--depths", type=_ints, help=_help("hidden-layer counts of the grid", d, "depths"))
    p.add_argument("--widths", type=_ints, help=_help("widths of the grid", d, "widths"))
    p.add_argument(
        "--kare-lrs",
        type=_floats,
        help=_help(
            "KARE learning rates",
            d,
            "kare_lrs",
            "the paper's per-depth grid, 100,10,1,0.1 up to depth 2, 10,5,1,0.1 deeper",
        ),
    )
    p.add_argument("--dnn-lrs", type=_floats, help=_help("DNN learning rates", d, "dnn_lrs"))
    p.add_argument("--dnn-batch-size", type=_pos_int, help=_help("DNN batch size", d, "dnn_batch_size"))
    p.add_argument("--seed", type=int, help=_help("seed", d, "seed"))
    p.add_argument(
        "--protocol",
        choices=("paper", "validated"),
        help=_help(
            "paper: best configuration and ridge picked on the evaluation split (optimistic); "
            "validated: configuration picked on conxuntos.dat's validation split, accuracy on the 4 "
            "conxuntos_kfold.dat test folds",
            d,
            "protocol",
        ),
    )
    p.add_argument(
        "--baselines",
        type=_baseline_names,
        help=_help(
            "classical baselines on the same splits, comma-separated: svc, rf, krr-rbf "
            "(svc and rf need scikit-learn: pip install 'keras-kare[reproduce]')",
            d,
            "baselines",
        ),
    )
    p.add_argument(
        "--recipes",
        type=_recipe_names,
        help=_help(
            "selection strategies beside the paper's, comma-separated: kare_es, dnn_es (early stopping on an "
            "inner split), kare_es0, dnn_es0 (the same, the initial weights a candidate), kare_rel (KARE with a "
            "relative ridge), kare_vs, dnn_vs (the paper's grid trainings scored on the validation half on the way: "
            "configuration and number of passes chosen together, the folds train that long), ensemble, ensemble_es, "
            "ensemble_es0, ensemble_vs (NTK-KARE + after-kernel), ntk_init "
            "(control: the untrained network's NTK); 'none': the paper's recipe only; see "
            "docs/reproducing.md",
            d,
            "recipes",
            "kare_es0,dnn_es0,ensemble_es0,ntk_init with --protocol validated, none with --protocol paper",
        ),
    )
    p.add_argument(
        "--no-paper-methods",
        dest="paper_methods",
        action="store_false",
        default=None,
        help="skip the paper's trainings (NTK-KARE, the DNN and its after-kernel) and run only --recipes and "
        "--baselines, e.g. --recipes ntk_init: the untrained control on the paper's grid in minutes (default: "
        "they run)",
    )
    p.add_argument(
        "--kare-relative-ridge",
        type=float,
        help=_help("z~ of the kare_rel recipe: KARE's ridge z = z~ tr(K)/n^2", d, "kare_relative_ridge"),
    )
    p.add_argument(
        "--jobs",
        type=_pos_int,
        default=1,
        help="data sets trained at once, each in its own single-threaded process (default: 1: in this process, "
        "or each table in a fresh process when the grid is large, e.g. the paper's grid on 3 tables or more)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        help="delgado_results.txt, the published accuracies of 179 classifiers (Fernández-Delgado et al. 2014): "
        "also rank the methods among them, as the paper's Table 1 does (default: none)",
    )
    return parser


# ------------------------------------------------------------------ settings
_NOT_SETTINGS = {
    "command", "experiment", "out", "resume", "quick", "debug", "panels", "networks", "jobs", "reference",
}  # fmt: skip


def make_settings(args: argparse.Namespace) -> dict:
    """Paper defaults, then ``--quick`` overrides, then explicit flags (see ``experiments.make_settings``)."""
    from keras_kare.reproduce import experiments as E

    if args.resume and args.out is None:
        raise CLIError("--resume needs --out DIR, the folder of the run to continue.")
    explicit = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS and v is not None}
    several = getattr(args, "panels", None) or getattr(args, "networks", None)
    if several:
        chosen = ("gamma", "sigma") if args.experiment == "synthetic" else ("depth", "width")
        clash = [f"--{k}" for k in chosen if k in explicit]
        if clash:
            flag = "--panels" if args.experiment == "synthetic" else "--networks"
            raise CLIError(f"{flag} chooses the panels; drop {' and '.join(clash)}.")
    settings = E.make_settings(args.experiment, args.quick, **explicit)
    if args.experiment == "synthetic" and not settings["n_train"] < settings["n"]:
        raise CLIError(f"--n-train ({settings['n_train']}) must be smaller than --n ({settings['n']}).")
    if args.experiment in ("mnist", "uci") and settings.get("data_dir") is not None:
        if not Path(settings["data_dir"]).is_dir():
            raise CLIError(f"{settings['data_dir']}: --data-dir does not exist or is not a folder.")
    if args.experiment == "higgs" and settings.get("data_dir") is not None:
        if not Path(settings["data_dir"]).exists():
            raise CLIError(f"{settings['data_dir']}: --data-dir does not exist.")
    if settings.get("validation_fraction") is not None and settings.get("protocol") != "validated":
        raise CLIError("--validation-fraction applies to --protocol validated only.")
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
        t0 = time.time()
        panels = getattr(args, "panels", None) or getattr(args, "networks", None)
        if panels:
            if args.experiment == "synthetic":
                E.run_synthetic_figure(settings, panels, out, args.resume, log, panel_log=_Logger)
            else:
                E.run_network_figure(args.experiment, settings, panels, out, args.resume, log, panel_log=_Logger)
        else:
            run = {"synthetic": E.run_synthetic, "mnist": E.run_mnist, "higgs": E.run_higgs, "uci": E.run_uci}
            extra = {"jobs": args.jobs, "reference": args.reference} if args.experiment == "uci" else {}
            run[args.experiment](settings, out, resume=args.resume, log=log, **extra)
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
