"""Our UCI scores among the 179 classifiers of Fernández-Delgado et al. (2014), as in the KARE paper's Table 1.

Fernández-Delgado, Cernadas, Barro and Amorim (2014), "Do we need hundreds of classifiers to solve real world
classification problems?", JMLR 15, published the accuracy of 179 classifiers on 121 UCI data sets; Arora et al.
(2020) and the KARE paper (Schwab, Kelly, Malamud and Xu, 2025, Table 1) score their methods within that
population. :func:`load_reference` reads the published table, :func:`score_against_reference` scores our methods
and a few well-known reference classifiers among all ``len(methods) + 179`` columns (Friedman rank, mean accuracy,
P90, P95, PMA as defined in :mod:`~keras_kare.reproduce.scoring`, "best" being the best of all columns on a data
set), and :func:`reference_table` renders markdown.

A failed classifier (``--``) scores accuracy 0 on that data set (ranked last, a P90/P95 miss, 0 in its mean and
PMA), which reproduces Fernández-Delgado et al.'s published figures (parRF_caret: PMA 94.1 %, P90 84.3 %; svm_C:
PMA 92.3 %) and, since a failure is never above anyone, leaves the best accuracy and our methods' ranks as if
failures were left out (the KARE authors' script instead averages a failing classifier over the data sets where
it ran).

Example:
    >>> ref = load_reference("uci-reference/delgado_results.txt")  # doctest: +SKIP
    >>> scores = score_against_reference(per, ["kare", "svc"], ref, key="validated")  # doctest: +SKIP
    >>> print(reference_table(scores))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_kare.reproduce.baselines import BASELINE_LABELS
from keras_kare.reproduce.results import METHOD_LABELS
from keras_kare.reproduce.scoring import score_table

SUMMARY_COLUMNS = ("min", "max", "mean", "std")
DEFAULT_REFERENCE = ("svm_C", "rf_caret", "parRF_caret", "elm_kernel_matlab")
REFERENCE_LABELS = {
    "svm_C": "svm_C (LibSVM, RBF)",
    "rf_caret": "rf_caret (random forest)",
    "parRF_caret": "parRF_caret (parallel random forest)",
    "elm_kernel_matlab": "elm_kernel_matlab (kernel ELM)",
    "svmPoly_caret": "svmPoly_caret (SVM, polynomial)",
}
KEY_LABELS = {"best": "best (paper protocol, optimistic)", "validated": "validated (validated protocol)"}


@dataclass(frozen=True)
class Reference:
    """Fernández-Delgado et al.'s accuracies: ``accuracy[i, j]`` of ``classifiers[j]`` on ``datasets[i]``, in
    [0, 1], NaN where the classifier failed (``--``)."""

    datasets: list[str]
    classifiers: list[str]
    accuracy: np.ndarray


def load_reference(path) -> Reference:
    """Read the published table: header ``problema <classifiers> min max mean std``, one row per data set.

    Accuracies are in percent, ``--`` where a classifier failed; the summary columns min/max/mean/std are dropped
    and so is a footer after a line of dashes (the per-classifier mean/std over data sets).

    Args:
        path: the whitespace-separated table (e.g. ``delgado_results.txt``).

    Returns:
        A :class:`Reference`, accuracies as fractions.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: naming the file (and line): no ``problema`` header, a row with another number of fields than
            the header, an entry that is neither a percentage nor ``--``, a repeated data set or classifier.

    Example:
        >>> ref = load_reference("delgado_results.txt")  # doctest: +SKIP
        >>> len(ref.datasets), len(ref.classifiers)  # doctest: +SKIP
        (121, 179)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (Fernández-Delgado et al.'s results table)")
    lines = [(n, line.split()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
    lines = [(n, tokens) for n, tokens in lines if tokens]
    if not lines or lines[0][1][0] != "problema":
        raise ValueError(f"{path}: the first line must be the header 'problema <classifier names> min max mean std'")
    header = lines[0][1]
    keep = [k for k in range(1, len(header)) if header[k] not in SUMMARY_COLUMNS]
    classifiers = [header[k] for k in keep]
    if not classifiers or len(set(classifiers)) != len(classifiers):
        raise ValueError(f"{path}: the header needs distinct classifier names after 'problema'")
    datasets, rows = [], []
    for n, tokens in lines[1:]:
        if len(tokens) == 1 and set(tokens[0]) == {"-"}:
            break  # the footer (mean, std over data sets) follows
        if len(tokens) != len(header):
            raise ValueError(f"{path}, line {n} ({tokens[0]}): {len(tokens)} fields, the header has {len(header)}")
        if tokens[0] in datasets:
            raise ValueError(f"{path}, line {n}: data set {tokens[0]!r} appears twice")
        rows.append([_percent(tokens[k], f"{path}, line {n} ({tokens[0]}), column {header[k]}") for k in keep])
        datasets.append(tokens[0])
    if not datasets:
        raise ValueError(f"{path}: no data set rows below the header")
    return Reference(datasets, classifiers, np.array(rows, dtype=np.float64) / 100)


def _percent(token: str, where: str) -> float:
    if token == "--":
        return np.nan
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"{where}: {token!r} is neither a number nor '--'") from None
    if not 0 <= value <= 100:
        raise ValueError(f"{where}: {token!r} is not a percentage in [0, 100]")
    return value


def score_against_reference(per, methods, reference: Reference, key: str = "best", named=DEFAULT_REFERENCE) -> dict:
    """Friedman rank, mean accuracy, P90, P95 and PMA of our methods and of ``named`` classifiers among all columns.

    Args:
        per: one dict per data set, ``{"dataset": name, "accuracy": {method: {"best": float, "validated": float
            or None}}}``, accuracies in [0, 1]; names as in the table's ``problema`` column.
        methods: our methods to score (all are ranked together with the reference classifiers).
        reference: from :func:`load_reference`.
        key: ``"best"`` (paper protocol) or ``"validated"``.
        named: reference classifiers to report; those absent from ``reference`` are skipped.

    Returns:
        ``{"key", "methods", "reference" (the named classifiers present), "population" (number of columns ranked),
        "n_datasets", "datasets", "missing" (ours, absent from the table), "dropped" (a method of ours has no
        number there), "failed" ({named classifier: data sets it failed on}), "scores": {name: {"friedman_rank",
        "mean_accuracy", "std_accuracy", "p90", "p95", "pma", "pma_std"}}}``; percentages in %, as
        :func:`~keras_kare.reproduce.scoring.score_table`.

    Example:
        >>> scores = score_against_reference(per, ["kare", "svc"], ref, key="best")  # doctest: +SKIP
        >>> scores["scores"]["kare"]["pma"], scores["n_datasets"], scores["missing"]  # doctest: +SKIP
    """
    if key not in KEY_LABELS:
        raise ValueError(f"key must be one of {sorted(KEY_LABELS)}, received {key!r}.")
    methods = list(methods)
    if not methods or set(methods) & set(reference.classifiers):
        raise ValueError(f"methods must be non-empty and distinct from the reference classifiers: {methods}.")
    row_of = {name: i for i, name in enumerate(reference.datasets)}
    names, ours, missing, dropped = [], [], [], []
    for d in per:
        name = d["dataset"]
        if name in names or name in missing or name in dropped:
            raise ValueError(f"data set {name!r} appears twice in per.")
        values = [(d["accuracy"].get(m) or {}).get(key) for m in methods]
        if name not in row_of:
            missing.append(name)
        elif any(v is None or not np.isfinite(v) for v in values):
            dropped.append(name)
        else:
            names.append(name)
            ours.append(values)
    ours = np.array(ours, dtype=np.float64).reshape(len(names), len(methods))
    if ((ours < 0) | (ours > 1)).any():
        raise ValueError("our accuracies must be fractions in [0, 1], not percentages.")
    theirs = reference.accuracy[[row_of[n] for n in names]].reshape(len(names), -1)
    present = [c for c in named if c in reference.classifiers]
    table = score_table(np.hstack([ours, np.nan_to_num(theirs, nan=0.0)]), methods + reference.classifiers)
    return {
        "key": key,
        "methods": methods,
        "reference": present,
        "population": len(methods) + len(reference.classifiers),
        "n_datasets": len(names),
        "datasets": names,
        "missing": missing,
        "dropped": dropped,
        "failed": {c: int(np.isnan(theirs[:, reference.classifiers.index(c)]).sum()) for c in present},
        "scores": {m: table[m] for m in methods + present if m in table},
    }


def reference_table(scores: dict) -> str:
    """Markdown table of :func:`score_against_reference`'s result: our methods, then the named classifiers.

    Args:
        scores: the dict :func:`score_against_reference` returns.

    Returns:
        ``| method | Friedman rank (of N) | mean accuracy (%) | P90 | P95 | PMA (%) |`` rows (mean and PMA ± their
        standard deviation over data sets), a blank line and a one-line footnote: population, protocol key, data
        set count, data sets missing or dropped, failures of the named classifiers.

    Example:
        >>> print(reference_table(score_against_reference(per, ["kare"], ref)))  # doctest: +SKIP
        | method | Friedman rank (of 180) | mean accuracy (%) | P90 | P95 | PMA (%) |
        ...
    """
    ours = scores["methods"]
    lines = [
        f"| method | Friedman rank (of {scores['population']}) | mean accuracy (%) | P90 | P95 | PMA (%) |",
        "|---|---|---|---|---|---|",
    ]
    labels = {**REFERENCE_LABELS, **{m: METHOD_LABELS.get(m, BASELINE_LABELS.get(m, m)) for m in ours}}
    for name in ours + scores["reference"]:
        label, v = labels.get(name, name), scores["scores"].get(name)
        if v is None:
            lines.append(f"| {label} | – | – | – | – | – |")
            continue
        lines.append(
            f"| {label} | {v['friedman_rank']:.1f} | {v['mean_accuracy']:.2f} ± {v['std_accuracy']:.2f} | "
            f"{v['p90']:.1f} | {v['p95']:.1f} | {v['pma']:.2f} ± {v['pma_std']:.2f} |"
        )
    note = (
        f"Population: {len(ours)} of our methods + {scores['population'] - len(ours)} classifiers of "
        f"Fernández-Delgado et al. (2014); protocol key {KEY_LABELS[scores['key']]}; {scores['n_datasets']} data sets"
    )
    if scores["missing"]:
        note += f"; {len(scores['missing'])} not in the reference table ({', '.join(scores['missing'])})"
    if scores["dropped"]:
        note += f"; {len(scores['dropped'])} dropped, a method of ours has no number ({', '.join(scores['dropped'])})"
    failed = [f"{c} on {k}" for c, k in scores["failed"].items() if k]
    if failed:
        note += f"; failures ({', '.join(failed)}) score 0, as in Fernández-Delgado et al. (2014)"
    return "\n".join(lines + ["", note + "."])
