"""The statistics of the study's claims (docs/study.md, "Analysis plan"): a paired test stratified by fold, two
one-sided tests for equivalence claims, Holm's correction over the distinct claims, and the verdicts.

A claim compares a row with a reference row on the same (fold, seed) pairs: d[f, s] = x_row[f, s] - x_ref[f, s].
The estimate is, as the paper's Mean column, the mean over folds of each fold's mean difference; its standard error
comes from an ordinary least-squares fit of d on fold indicators (sum-to-zero coding, so the intercept is that mean
of fold means), i.e. the residual variance pooled within folds, with n - F degrees of freedom (statsmodels). With
one fold this is exactly the paired t-test (scipy's ``ttest_rel``, statsmodels' ``ttost_paired``: the tests check).

- A *direction* claim (the paper's |difference| >= ``EQUIVALENCE_THRESHOLD``) tests d = 0, two-sided; after Holm's
  correction over every claim it ``agrees`` (significant, our sign is the paper's), ``disagrees`` (significant, the
  other sign) or ``cannot tell``.
- An *equivalence* claim (the paper's |difference| < the threshold) tests |d| >= margin with two one-sided tests
  (p = the larger of the two); after Holm it is ``equivalent`` when rejected, ``not equivalent`` when the
  Bonferroni interval (level 1 - alpha/m) lies wholly outside [-margin, margin], else ``cannot tell``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

AGREES, DISAGREES, CANNOT_TELL = "agrees", "disagrees", "cannot tell"
EQUIVALENT, NOT_EQUIVALENT = "equivalent", "not equivalent"
DIRECTION, EQUIVALENCE = "direction", "equivalence"
EQUIVALENCE_THRESHOLD = 1.0  # mIoU points: a paper difference below it is read as "about equal"
ALPHA = 0.05
POWER = 0.8  # the power at which the smallest detectable difference is stated
HALF_WIDTH_TARGET = 1.5  # mIoU points: the 95% half-width each primary claim is planned for (docs/study.md, "Power")


@dataclass(frozen=True)
class Claim:
    """The paper's statement that ``row`` differs from ``reference`` by ``paper_diff`` (row - reference)."""

    row: str
    reference: str
    paper_diff: float
    primary: bool = False
    tables: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return EQUIVALENCE if abs(self.paper_diff) < EQUIVALENCE_THRESHOLD else DIRECTION

    @property
    def key(self) -> str:
        return f"{self.row} vs {self.reference}"


def stratified_mean(values: pd.DataFrame, level: float = 1 - ALPHA) -> dict:
    """Mean over folds of per-fold means of ``values`` (columns fold, value) with its standard error, degrees of
    freedom and ``level`` interval; se and the interval are NaN when no fold has two values."""
    import statsmodels.formula.api as smf
    from scipy import stats

    values = values.dropna(subset=["value"])
    n, folds = len(values), values["fold"].nunique()
    empty = {"estimate": math.nan, "se": math.nan, "df": 0, "n": n, "folds": folds, "low": math.nan,
             "high": math.nan, "half_width": math.nan}
    if n == 0:
        return empty
    estimate = float(values.groupby("fold")["value"].mean().mean())
    df = n - folds
    if df < 1:
        return {**empty, "estimate": estimate}
    formula = "value ~ C(fold, Sum)" if folds > 1 else "value ~ 1"
    fit = smf.ols(formula, data=values.assign(fold=values["fold"].astype(int))).fit()
    se = float(fit.bse["Intercept"])
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return {"estimate": estimate, "se": se, "df": int(df), "n": n, "folds": folds, "low": estimate - half,
            "high": estimate + half, "half_width": half}


def claim_statistics(diffs: pd.DataFrame, margin: float) -> dict:
    """The stratified paired statistics of one claim's differences (columns fold, value): estimate, se, df, 95%
    interval, two-sided p of d = 0 and the two-one-sided-tests p of |d| >= margin."""
    from scipy import stats

    est = stratified_mean(diffs)
    if math.isnan(est["se"]) or est["se"] == 0:
        return {**est, "p_zero": math.nan, "p_tost": math.nan}
    t = est["estimate"] / est["se"]
    p_zero = float(2 * stats.t.sf(abs(t), est["df"]))
    p_above = float(stats.t.sf((est["estimate"] + margin) / est["se"], est["df"]))   # H0: d <= -margin
    p_below = float(stats.t.cdf((est["estimate"] - margin) / est["se"], est["df"]))  # H0: d >= +margin
    return {**est, "p_zero": p_zero, "p_tost": max(p_above, p_below)}


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels); a missing p (no test possible) counts as 1."""
    from statsmodels.stats.multitest import multipletests

    p = np.nan_to_num(np.asarray(pvalues, float), nan=1.0)
    if p.size == 0:
        return p
    return multipletests(p, alpha=alpha, method="holm")[1]


def detectable_difference(se: float, df: int, m: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest |d| the two-sided test detects with ``power`` at the Bonferroni level alpha / m (the strictest
    step of Holm's procedure), for a standard error ``se`` on ``df`` degrees of freedom."""
    from scipy import stats

    if math.isnan(se) or df < 1:
        return math.nan
    return float((stats.t.ppf(1 - alpha / (2 * m), df) + stats.t.ppf(power, df)) * se)


def pairs_for_half_width(sd: float, folds: int, target: float = HALF_WIDTH_TARGET, level: float = 1 - ALPHA,
                         limit: int = 10_000) -> float:
    """The smallest number of pairs n, a multiple of ``folds`` (as many seeds on every fold), whose stratified
    ``level`` half-width t(n - folds) x sd / sqrt(n) is at most ``target``, for a within-fold SD ``sd``: the rule a
    design sizes its claims by (docs/study.md, "Power"). NaN when sd is unknown or no n up to ``limit`` suffices."""
    from scipy import stats

    if math.isnan(sd) or folds < 1:
        return math.nan
    n = np.arange(2 * folds, limit + 1, folds)
    meets = stats.t.ppf(0.5 + level / 2, n - folds) * sd / np.sqrt(n) <= target
    return int(n[meets.argmax()]) if meets.any() else math.nan


def pairs_for_assurance(d: pd.DataFrame, target: float = HALF_WIDTH_TARGET, assurance: float = 0.8,
                        level: float = 1 - ALPHA, draws: int = 1000, max_seeds: int = 60, seed: int = 0) -> float:
    """The number of pairs (seeds x folds) from which on a design of this claim meets the half-width ``target`` in
    at least ``assurance`` of the designs drawn by resampling the seeds of ``d`` (columns fold, seed, value; only
    seeds present on every fold) with replacement: each draw's stratified half-width t(n - folds) x its within-fold
    SD / sqrt(n). Where rare collapses set the spread, one seed more or less moves the SD by half, and the rule of
    :func:`pairs_for_half_width` at a measured SD meets the target about half the time (docs/study.md, "After the
    fifth run"); resampling keeps the collapses at the rate they were seen. Small draws that happen to miss every
    collapse meet the target too, so the answer is the smallest seed count from which every larger one up to
    ``max_seeds`` meets the assurance. Deterministic (``seed``); NaN with fewer than 2 complete seeds or when
    ``max_seeds`` do not suffice."""
    from scipy import stats

    if d.empty:
        return math.nan
    values = d.pivot_table(index="seed", columns="fold", values="value").dropna().to_numpy(float)  # seeds x folds
    if len(values) < 2:
        return math.nan
    folds = values.shape[1]
    rng = np.random.default_rng(seed)
    first = math.nan
    for k in range(2, max_seeds + 1):
        x = values[rng.integers(0, len(values), size=(draws, k))]  # draws x k seeds x folds
        n = k * folds
        sd = np.sqrt(((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=(1, 2)) / (n - folds))
        meets = (stats.t.ppf(0.5 + level / 2, n - folds) * sd / math.sqrt(n) <= target).mean() >= assurance
        if not meets:
            first = math.nan  # a larger count fell short: start again above it
        elif math.isnan(first):
            first = n
    return first


def decide(claims: Iterable[Claim], diffs: dict[str, pd.DataFrame], margin: float = EQUIVALENCE_THRESHOLD,
           alpha: float = ALPHA) -> pd.DataFrame:
    """One row per claim: the statistics of :func:`claim_statistics`, the Holm-adjusted p of the claim's own hypothesis,
    the verdict, the smallest detectable difference and whether the paper's difference lies in our 95% interval.
    ``diffs`` maps a claim's key to its paired differences (columns fold, seed, value)."""
    from scipy import stats

    claims = list(claims)
    m = max(1, len(claims))
    records = []
    for claim in claims:
        d = diffs.get(claim.key, pd.DataFrame(columns=["fold", "seed", "value"]))
        records.append({"claim": claim.key, "row": claim.row, "reference": claim.reference,
                        "primary": claim.primary, "kind": claim.kind, "tables": ", ".join(claim.tables),
                        "paper_diff": claim.paper_diff, **claim_statistics(d, margin)})
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame
    own_p = np.where(frame["kind"] == EQUIVALENCE, frame["p_tost"], frame["p_zero"])
    frame["p_adjusted"] = holm(own_p, alpha)
    bonferroni_t = [stats.t.ppf(1 - alpha / (2 * m), df) if df >= 1 else math.nan for df in frame["df"]]
    frame["fw_low"] = frame["estimate"] - np.asarray(bonferroni_t) * frame["se"]
    frame["fw_high"] = frame["estimate"] + np.asarray(bonferroni_t) * frame["se"]
    frame["detectable"] = [detectable_difference(se, df, m, alpha) for se, df in zip(frame["se"], frame["df"])]
    # the within-fold SD behind se (exact with as many pairs on every fold) and the pairs it needs for the target
    frame["sd"] = frame["se"] * np.sqrt(frame["n"].astype(float))
    frame["pairs_for_target"] = [pairs_for_half_width(sd, folds) for sd, folds in zip(frame["sd"], frame["folds"])]
    # the primary claims' pairs for 80% assurance of the target, from this run's seeds resampled (the next design's)
    frame["pairs_for_assurance"] = [
        pairs_for_assurance(diffs[c.key]) if c.primary and c.key in diffs else math.nan for c in claims]
    frame["paper_in_interval"] = (frame["low"] <= frame["paper_diff"]) & (frame["paper_diff"] <= frame["high"])
    frame["verdict"] = [verdict(r, margin, alpha) for r in frame.itertuples()]
    frame["margin"] = np.where(frame["kind"] == EQUIVALENCE, margin, math.nan)
    return frame


def verdict(r, margin: float, alpha: float = ALPHA) -> str:
    """The verdict of one claim's row of :func:`decide` (see the module docstring)."""
    if math.isnan(r.p_adjusted) or math.isnan(r.se):
        return CANNOT_TELL
    significant = r.p_adjusted < alpha
    if r.kind == EQUIVALENCE:
        if significant:
            return EQUIVALENT
        if r.fw_low > margin or r.fw_high < -margin:
            return NOT_EQUIVALENT
        return CANNOT_TELL
    if not significant:
        return CANNOT_TELL
    return AGREES if (r.estimate > 0) == (r.paper_diff > 0) else DISAGREES


__all__ = ["AGREES", "ALPHA", "CANNOT_TELL", "Claim", "DIRECTION", "DISAGREES", "EQUIVALENCE", "EQUIVALENT",
           "EQUIVALENCE_THRESHOLD", "HALF_WIDTH_TARGET", "NOT_EQUIVALENT", "decide", "detectable_difference", "holm",
           "pairs_for_assurance", "pairs_for_half_width", "stratified_mean", "claim_statistics", "verdict"]
