"""What a UCI run costs and how far along it is: relative costs per training and table, and the progress clock.

The costs weigh the trainings of ``reproduce uci`` for its time-left
estimate; :class:`RunClock` prints a line per training with that estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Optional

from keras_kare.reproduce.eta import format_seconds
from keras_kare.reproduce.uci_recipes import EARLY_STOPPED, STEP_SELECTED, TRIAL_METHODS, fold_kinds, uci_configs


def table_cost(rows: int) -> float:
    """Rough relative cost of one table of ``rows`` rows in a UCI run, for the run's time-left estimate.

    The weights of :class:`~keras_kare.reproduce.eta.WorkETA` in ``reproduce uci``:
    a fixed part (tracing every architecture, the baselines), a part growing
    with the rows (DNN passes, kernel regressions) and the full-batch KARE
    steps' Gram and factorisation, growing faster; from 5 000 rows KARE trains
    on mini-batches (:func:`~keras_kare.reproduce.runner.paper_batch`) and
    that part stops growing. Fitted by eye to paper-grid tables of 100, 366
    and 1 000 rows (357 s, 722 s, 1 630 s; ``benchmarks/bench_paper_grid.py``
    has the step times behind it): a guide to the order of magnitude, not a
    model of any one grid.
    """
    from keras_kare.reproduce.runner import FULL_BATCH_ROWS

    return 1.0 + rows / 250.0 + (min(rows, FULL_BATCH_ROWS) / 600.0) ** 2


def training_cost(kind: str, depth: int, width: int, rows: int) -> float:
    """Rough relative cost of one training of a UCI grid on a table of ``rows`` rows, for the time-left estimate.

    KARE kinds build and factor a Gram matrix every step and cost several times
    a DNN training; both grow with depth and width. The factors were fitted
    by least squares to the logged times of about 5 500 paper-grid trainings on
    tables of 10-1 022 rows. Replayed on those logs from 5-90 % of a table done,
    the time left is 0.67-1.31x the time taken on tables of about 1 000 rows
    (counting trainings as equal: 0.39-0.80x) and 0.76-2.0x on tables of at
    most 150 rows, whose fixed costs these factors overweight; on six tables of
    748-1 022 rows not in the fit, 0.58-1.33x (equal: 0.41-0.88x). The table's
    size enters through :func:`table_cost`.

    Example:
        >>> training_cost("kare", 5, 512, 300) > training_cost("kare", 1, 32, 300) > training_cost("dnn", 1, 32, 300)
        True
    """
    if kind == "ntk_init":
        shape = 0.1 * 1.2**depth * width**0.25  # one kernel regression, no training
    elif kind.startswith("kare"):
        shape = (0.8 if kind in EARLY_STOPPED else 1.0) * 1.2**depth * width**0.25
    else:
        shape = 0.15 * 1.4**depth * width**0.35
    return shape * table_cost(rows)


def dataset_cost(s: dict, kare_lrs_by_depth: dict, rows: int) -> float:
    """Summed :func:`training_cost` of one table's trainings as counted by :func:`trainings_per_dataset`.

    The validated protocol's fold trainings are not known before the grid has
    run; each is counted at its kind's mean grid cost (:func:`fold_budget`).
    """
    grid = sum(training_cost(kind, d, w, rows) for kind, d, w, _ in uci_configs(s, kare_lrs_by_depth))
    return grid + fold_budget(s, kare_lrs_by_depth, rows)[1]


def fold_budget(s: dict, kare_lrs_by_depth: dict, rows: int) -> tuple[int, float]:
    """The validated protocol's fold trainings as counted before the grid has run: ``(trainings, cost)``.

    Four folds for every method's choice (a DNN's and its after-kernel's may
    differ), each at its kind's mean grid cost; ``(0, 0.0)`` under the paper
    protocol. Once the choices are known, :func:`~keras_kare.reproduce.uci_protocol.run_dataset` tells the
    :class:`RunClock` how many of these trainings the table really needs.
    """
    trainings, cost = 0, 0.0
    for kind, count in _fold_trainings(s).items():
        grid_kind = STEP_SELECTED.get(kind, kind)  # a step-selected recipe's folds train its grid kind's networks
        costs = [training_cost(kind, d, w, rows) for k, d, w, _ in uci_configs(s, kare_lrs_by_depth) if k == grid_kind]
        trainings += count
        cost += count * sum(costs) / len(costs)
    return trainings, cost


def _fold_trainings(s: dict) -> dict:
    """Fold trainings per training kind counted before the grid has run: 4 per method it yields (validated)."""
    if s.get("protocol", "paper") != "validated":
        return {}
    return {kind: 4 * len(TRIAL_METHODS[kind]) for kind in fold_kinds(s)}


class RunClock:
    """Progress of a UCI run: a line per training with the time left, and a whole-run estimate after the first.

    The time left is the wall time so far per unit of cost done, times the cost
    not done: each training's cost is passed to :meth:`trained` (equal costs
    when none is given), the whole run's as ``total_cost``.

    Args:
        total_trainings: number of trainings the run counts (for the ``k/N`` count).
        log: where the lines go.
        total_cost: summed costs of all the trainings (e.g. :func:`dataset_cost`);
            ``total_trainings`` when omitted.

    Example:
        >>> clock = RunClock(2, print)
        >>> clock.trained(1.5, "iris: kare depth 1 width 128 lr 10", "best accuracy 96.0%")  # doctest: +ELLIPSIS
        first configuration (iris: kare depth 1 width 128 lr 10) took 1.5s; estimated total for 2 trainings: ...
        iris: kare depth 1 width 128 lr 10: best accuracy 96.0% in 1.5s (1/2 trainings, about ... left)
    """

    def __init__(self, total_trainings: int, log: Callable[[str], None], total_cost: Optional[float] = None):
        self.total, self.log, self.done, self.t0, self.first = total_trainings, log, 0, time.time(), None
        self.total_cost = float(total_trainings if total_cost is None else total_cost)
        self.cost_done = 0.0

    def replan(self, trainings: int, cost: float) -> None:
        """Change the counted total by ``trainings`` and ``cost`` (negative: fewer) when a table's plan is known.

        E.g. the validated protocol's fold trainings, counted before the grid ran
        (:func:`fold_budget`), once the chosen configurations are known: methods
        that chose the same configuration share their fold trainings, and a
        diverged fold's fallback adds one.
        """
        self.total += int(trainings)
        self.total_cost += float(cost)

    def trained(self, seconds: float, what: str = "", result: str = "", cost: float = 1.0):
        """Count one training of ``seconds`` and relative ``cost``; log ``what`` (configuration) and ``result``."""
        self.done += 1
        self.cost_done += float(cost)
        if self.first is None:
            self.first = seconds
            est = seconds * self.total_cost / float(cost)
            self.log(
                f"first configuration{(' (' + what + ')') if what else ''} took {seconds:.1f}s; estimated total "
                f"for {self.total} trainings: {format_seconds(est)} (rough: relative costs by kind, depth and width)"
            )
        self.log(
            f"{what or 'training'}: {(result + ' in ') if result else ''}{seconds:.1f}s "
            f"({self.done}/{self.total} trainings, about {self.eta()} left)"
        )

    def remaining_seconds(self) -> Optional[float]:
        """Wall seconds so far per unit of cost done, times the cost left (None before the first training)."""
        if not self.cost_done:
            return None
        return max(self.total_cost - self.cost_done, 0.0) * (time.time() - self.t0) / self.cost_done

    def eta(self) -> str:
        """:meth:`remaining_seconds` formatted (trainings only, not the baselines)."""
        left = self.remaining_seconds()
        return "unknown" if left is None else format_seconds(left)


def trainings_per_dataset(s: dict, kare_lrs_by_depth: dict) -> int:
    """Grid trainings plus (validated) at most 4 folds × each training kind's chosen configurations."""
    return len(list(uci_configs(s, kare_lrs_by_depth))) + sum(_fold_trainings(s).values())
