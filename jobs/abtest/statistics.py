"""The statistics of the A/B readout, on one row per exposed client (pandas in, rows out), from
scipy and statsmodels: no formula is written here. Kept apart from Spark so that the benchmark
(bench/abtest.py) runs exactly these on thousands of simulated experiments.

Input columns: arm ('treatment' / 'control'), signed_shown and signed_any (0/1), rent_signed.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from jobs.core.abtest import CONTROL, TREATMENT, Experiment

ALPHA = 0.05
POWER = 0.8
SRM_ALPHA = 0.001  # a sample-ratio test is run on every readout: only a strong signal flags
# Both arms' lists pass the same filters before ranking and have the same length k: lists of one arm
# shorter on average by more than this share mean something filtered after one model.
LIST_LENGTH_TOLERANCE = 0.05
PROPORTIONS = ("signed_shown", "signed_any")
MEAN = "rent_signed"
METRIC_NAMES = {"signed_shown": "signed_shown_share", "signed_any": "signed_any_share",
                "rent_signed": "rent_per_client"}
DIFF, LIFT, NEEDED, ALL = "diff", "lift", "needed", "all"
BOOTSTRAP_RESAMPLES = 999


def _row(experiment: Experiment, metric: str, arm: str, value, ci=(None, None), p_value=None, n=0,
         flags=()) -> dict:
    def number(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    return {"experiment": experiment.name, "metric": metric, "arm": arm, "value": number(value),
            "ci_low": number(ci[0]), "ci_high": number(ci[1]), "p_value": number(p_value), "n_clients": int(n),
            "flags": ",".join(flags)}


def sample_ratio(n_treatment: int, n_control: int, treatment_share: int) -> float:
    """p-value of the chi-square test of the clients per arm against the configured split."""
    from scipy.stats import chisquare

    total = n_treatment + n_control
    if total == 0 or treatment_share in (0, 100):
        return float("nan")
    expected = [total * treatment_share / 100, total * (100 - treatment_share) / 100]
    return float(chisquare([n_treatment, n_control], f_exp=expected).pvalue)


def _proportion_rows(experiment: Experiment, column: str, t: np.ndarray, c: np.ndarray,
                     flags: list[str]) -> list[dict]:
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import (
        confint_proportions_2indep,
        proportion_confint,
        proportion_effectsize,
        test_proportions_2indep,
    )

    metric = METRIC_NAMES[column]
    rows = []
    for arm, x in ((TREATMENT, t), (CONTROL, c)):
        share = x.mean() if len(x) else float("nan")
        ci = proportion_confint(int(x.sum()), len(x), alpha=ALPHA, method="wilson") if len(x) else (None, None)
        rows.append(_row(experiment, metric, arm, share, ci, None, len(x), flags))
    k1, n1, k2, n2 = int(t.sum()), len(t), int(c.sum()), len(c)
    diff = lift = p_diff = p_lift = float("nan")
    ci_diff = ci_lift = (None, None)
    if n1 and n2:
        diff = k1 / n1 - k2 / n2
        ci_diff = confint_proportions_2indep(k1, n1, k2, n2, compare="diff", method="newcomb", alpha=ALPHA)
        p_diff = test_proportions_2indep(k1, n1, k2, n2, compare="diff", method="score").pvalue
        if k2:
            lift = (k1 / n1) / (k2 / n2) - 1
            low, high = confint_proportions_2indep(k1, n1, k2, n2, compare="ratio", method="log-adjusted",
                                                   alpha=ALPHA)
            ci_lift = (low - 1, high - 1)
            p_lift = test_proportions_2indep(k1, n1, k2, n2, compare="ratio", method="score").pvalue
    base = k2 / n2 if n2 else float("nan")
    needed_t = float("nan")
    if 0 < base < 1 and experiment.treatment_share not in (0, 100):
        target = min(base * (1 + experiment.min_detectable_lift), 1 - 1e-9)
        ratio = (100 - experiment.treatment_share) / experiment.treatment_share
        needed_t = NormalIndPower().solve_power(effect_size=proportion_effectsize(target, base), alpha=ALPHA,
                                                power=POWER, ratio=ratio, alternative="two-sided")
    return rows + _comparison_rows(experiment, metric, (diff, ci_diff, p_diff), (lift, ci_lift, p_lift),
                                   needed_t, n1, n2, flags)


def _comparison_rows(experiment: Experiment, metric: str, diff, lift, needed_t: float, n1: int, n2: int,
                     flags: list[str]) -> list[dict]:
    """diff, lift and needed rows; `needed` is the clients (both arms) a test of the configured
    minimum detectable lift needs at 80% power; fewer exposed flags the metric underpowered."""
    ratio = (100 - experiment.treatment_share) / max(experiment.treatment_share, 1)
    needed_total = needed_t * (1 + ratio) if not math.isnan(needed_t) else float("nan")
    short = math.isnan(needed_t) or n1 < needed_t or n2 < needed_t * ratio
    metric_flags = [*flags, "underpowered"] if short else flags
    n = n1 + n2
    return [_row(experiment, metric, DIFF, diff[0], diff[1], diff[2], n, metric_flags),
            _row(experiment, metric, LIFT, lift[0], lift[1], lift[2], n, metric_flags),
            _row(experiment, metric, NEEDED, needed_total if not math.isnan(needed_total) else None,
                 (None, None), None, n, metric_flags)]


def _mean_rows(experiment: Experiment, column: str, t: np.ndarray, c: np.ndarray, flags: list[str]) -> list[dict]:
    from scipy.stats import bootstrap
    from statsmodels.stats.power import TTestIndPower
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    metric = METRIC_NAMES[column]
    rows = []
    for arm, x in ((TREATMENT, t), (CONTROL, c)):
        ci = DescrStatsW(x).tconfint_mean(alpha=ALPHA) if len(x) > 1 else (None, None)
        rows.append(_row(experiment, metric, arm, x.mean() if len(x) else float("nan"), ci, None, len(x), flags))
    diff = lift = (float("nan"), (None, None), float("nan"))
    if len(t) > 1 and len(c) > 1 and (t.std() > 0 or c.std() > 0):
        compare = CompareMeans(DescrStatsW(t), DescrStatsW(c))
        p_value = compare.ttest_ind(usevar="unequal")[1]
        diff = (t.mean() - c.mean(), compare.tconfint_diff(alpha=ALPHA, usevar="unequal"), p_value)
        if c.mean() > 0:
            # The ratio of two means has no closed-form interval in these libraries: scipy's
            # bootstrap, with a fixed seed so that a rerun publishes the same rows.
            interval = bootstrap((t, c), lambda a, b, axis: a.mean(axis=axis) / b.mean(axis=axis) - 1,
                                 vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=1 - ALPHA,
                                 method="percentile", batch=50, rng=np.random.default_rng(0)).confidence_interval
            lift = (t.mean() / c.mean() - 1, (interval.low, interval.high), p_value)
    needed_t = float("nan")
    sd = np.sqrt((t.var(ddof=1) + c.var(ddof=1)) / 2) if len(t) > 1 and len(c) > 1 else 0.0
    if c.mean() > 0 and sd > 0 and experiment.treatment_share not in (0, 100):
        ratio = (100 - experiment.treatment_share) / experiment.treatment_share
        needed_t = TTestIndPower().solve_power(effect_size=experiment.min_detectable_lift * c.mean() / sd,
                                               alpha=ALPHA, power=POWER, ratio=ratio, alternative="two-sided")
    return rows + _comparison_rows(experiment, metric, diff, lift, needed_t, len(t), len(c), flags)


def _list_length_rows(experiment: Experiment, t: np.ndarray, c: np.ndarray, flags: list[str]) -> list[dict]:
    """Premises listed per answer, per client, by arm: they differ only if something after the
    models (a filter, a cut) changed what one arm is shown."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    rows = []
    for arm, x in ((TREATMENT, t), (CONTROL, c)):
        ci = DescrStatsW(x).tconfint_mean(alpha=ALPHA) if len(x) > 1 and x.std() > 0 else (None, None)
        rows.append(_row(experiment, "items_shown", arm, x.mean() if len(x) else None, ci, None, len(x), flags))
    if not len(t) or not len(c):
        return rows
    p_value = (CompareMeans(DescrStatsW(t), DescrStatsW(c)).ttest_ind(usevar="unequal")[1]
               if len(t) > 1 and len(c) > 1 and (t.std() > 0 or c.std() > 0) else None)
    rows.append(_row(experiment, "items_shown", DIFF, t.mean() - c.mean(), (None, None), p_value, len(t) + len(c),
                     flags))
    return rows


def lists_differ(clients: pd.DataFrame) -> bool:
    if "items_per_exposure" not in clients or clients.empty:
        return False
    means = clients.groupby("arm")["items_per_exposure"].mean()
    if len(means) < 2 or max(means) == 0:
        return False
    return bool(abs(means.get(TREATMENT, 0) - means.get(CONTROL, 0)) / max(means) > LIST_LENGTH_TOLERANCE)


def overlap_with(clients: pd.DataFrame, experiment: Experiment, others: list[Experiment]) -> tuple:
    """(share, p-value, treated clients, other experiment) for the other configured experiment whose
    treatment the treated clients of this one were most often in: under salted hashes it is that
    experiment's share; far above it, the same clients are treated again (a reused name or salt)."""
    from scipy.stats import binomtest

    treated = clients.loc[clients["arm"] == TREATMENT, "client_id"].to_numpy()
    worst = None
    for other in others:
        if other.treatment_share in (0, 100) or not len(treated):
            continue
        again = sum(other.arm(int(c)) == TREATMENT for c in treated)
        p_value = binomtest(again, len(treated), other.treatment_share / 100, alternative="greater").pvalue
        if worst is None or p_value < worst[1]:
            worst = (again / len(treated), p_value, len(treated), other)
    return worst


def readout(clients: pd.DataFrame, experiment: Experiment, *, exposures: int = 0,
            mismatched_exposures: int = 0, mismatched_clients: int = 0, revenue: bool = True,
            others: list[Experiment] = ()) -> list[dict]:
    """The rows of marts.ab_readout (without ds) for one experiment.

    `clients`: one row per exposed client (see the module doc; arms_logged > 1 when a client was
    logged in both arms). `exposures`, `mismatched_exposures`: answers of the experiment, and those
    whose logged arm is not the arm the client's hash gives (mismatched_clients: their clients).
    `revenue=False` leaves rent_per_client out (its bootstrap is the slow part, for the benchmark).
    `others`: the other configured experiments, whose treated clients must not be this one's again.
    """
    arms = clients["arm"].to_numpy()
    n_t, n_c = int((arms == TREATMENT).sum()), int((arms == CONTROL).sum())
    srm_p = sample_ratio(n_t, n_c, experiment.treatment_share)
    both = int((clients["arms_logged"] > 1).sum()) if "arms_logged" in clients else 0
    mismatch_share = mismatched_exposures / exposures if exposures else 0.0
    flags = []
    if not math.isnan(srm_p) and srm_p < SRM_ALPHA:
        flags.append("sample_ratio_mismatch")
    if mismatched_exposures:
        flags.append("assignment_mismatch")
    if both:
        flags.append("clients_in_both_arms")
    if not n_t or not n_c:
        flags.append("empty_arm")
    if lists_differ(clients):
        flags.append("shown_lists_differ")
    overlap = overlap_with(clients, experiment, list(others))
    if overlap and overlap[1] < SRM_ALPHA:
        flags.append("same_clients_treated")
    rows = [_row(experiment, "exposed_clients", TREATMENT, n_t, n=n_t, flags=flags),
            _row(experiment, "exposed_clients", CONTROL, n_c, n=n_c, flags=flags),
            _row(experiment, "treatment_share", ALL, n_t / (n_t + n_c) if n_t + n_c else None,
                 p_value=srm_p, n=n_t + n_c, flags=flags),
            _row(experiment, "assignment_mismatch_share", ALL, mismatch_share, n=mismatched_clients, flags=flags),
            _row(experiment, "clients_in_both_arms", ALL, both, n=both, flags=flags)]
    if overlap:
        rows.append(_row(experiment, "treated_again_share", ALL, overlap[0], p_value=overlap[1], n=overlap[2],
                         flags=flags))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # small or one-sided samples: the rows say so with NaN and flags
        if "items_per_exposure" in clients:
            values = clients["items_per_exposure"].to_numpy(dtype=float)
            rows += _list_length_rows(experiment, values[arms == TREATMENT], values[arms == CONTROL], flags)
        for column in PROPORTIONS:
            values = clients[column].to_numpy(dtype=float)
            rows += _proportion_rows(experiment, column, values[arms == TREATMENT], values[arms == CONTROL], flags)
        if revenue:
            values = clients[MEAN].to_numpy(dtype=float)
            rows += _mean_rows(experiment, MEAN, values[arms == TREATMENT], values[arms == CONTROL], flags)
    return rows
