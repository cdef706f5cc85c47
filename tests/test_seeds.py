"""Training-seed variation: widened intervals (measured coverage), baselines, prior contrasts."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pidlib.analysis.claims import Claim, fingerprint_claims, rule_holds
from pidlib.analysis.layerwise import COLUMNS
from pidlib.analysis.seeds import (
    correlation_baselines,
    difference_seed_spread,
    replicate_pairs,
    seed_claims,
    widen,
    widen_by,
    with_seed_spread,
)
from pidlib.analysis.summaries import prior_contrast


def test_widen_matches_a_hand_computation():
    lo, hi, df = widen(0.6, 0.5, 0.7, [0.55, 0.65, 0.6])
    se_b, s_r = 0.2 / (2 * stats.norm.ppf(0.975)), 0.05
    se = math.sqrt(se_b**2 + s_r**2)
    assert df == pytest.approx(2 * (se / s_r) ** 4)
    half = stats.t.ppf(0.975, df) * se
    assert (lo, hi) == pytest.approx((0.6 - half, 0.6 + half))
    # a point claim is widened by the replicates alone; one replicate or a NaN bound: no interval
    lo, hi, df = widen(0.01, 0.01, 0.01, [0.0, 0.02])
    assert df == pytest.approx(1) and hi == pytest.approx(
        0.01 + stats.t.ppf(0.975, 1) * 0.01414, 1e-3
    )
    assert all(math.isnan(x) for x in widen(0.6, 0.5, 0.7, [0.5, math.nan]))
    assert all(math.isnan(x) for x in widen(0.6, math.nan, 0.7, [0.5, 0.6]))


def test_widened_intervals_cover_the_recipe_mean_where_question_intervals_do_not():
    """Simulated retrains: a build value = mu + seed effect + question noise, with a correct
    question-only interval, and three replicate sets drawn the same way. The question-only
    interval misses mu about half the time when seeds vary as much as questions do; the
    widened interval covers it at >= 95% (measured over 4,000 builds)."""
    rng = np.random.default_rng(0)
    mu, s_seed, s_q, z = 0.3, 0.05, 0.05, stats.norm.ppf(0.975)
    hits_q = hits_w = 0
    n = 4000
    for _ in range(n):
        value = mu + rng.normal(0, s_seed) + rng.normal(0, s_q)
        reps = mu + rng.normal(0, s_seed, 3) + rng.normal(0, s_q, 3)
        lo, hi = value - z * s_q, value + z * s_q
        hits_q += lo <= mu <= hi
        w_lo, w_hi, _ = widen(value, lo, hi, reps)
        hits_w += w_lo <= mu <= w_hi
    assert hits_q / n < 0.9
    assert hits_w / n >= 0.95


def test_claims_are_widened_and_re_decided_by_their_own_rule():
    c = Claim(
        "U_L carries most", "≈ 82%", 0.62, 0.55, 0.69, holds=True, unit="share", rule="lo >= 0.5"
    )
    assert rule_holds(c.rule, c.value, c.lo, c.hi) is True
    sets = {
        "B1": [Claim("U_L carries most", "", 0.40, 0, 0, None, "", rule="lo >= 0.5")],
        "B2": [Claim("U_L carries most", "", 0.70, 0, 0, None, "", rule="lo >= 0.5")],
        "B3": [Claim("U_L carries most", "", 0.55, 0, 0, None, "", rule="lo >= 0.5")],
    }
    table = with_seed_spread([c, Claim("no rule", "", 1, 0, 2, True, "")], sets)
    assert list(table["claim"]) == ["U_L carries most"]  # a claim without a rule is left out
    row = table.iloc[0]
    assert (row["lo"], row["hi"], row["df"]) == pytest.approx(
        widen(0.62, 0.55, 0.69, [0.40, 0.70, 0.55])
    )
    assert row["lo"] < 0.5 and not row["holds"] and row["build_holds"]
    assert row["gap"] == pytest.approx(0.62 - np.mean([0.40, 0.70, 0.55]))
    (widened,) = seed_claims(table, [c], ["B1", "B2", "B3"])
    assert widened.holds is False and widened.lo == row["lo"] and "B1 0.4" in widened.detail
    with pytest.raises(ValueError, match="rule"):
        rule_holds("lo => 0.5", 1, 0, 2)


def _table(rows: list[dict]) -> pd.DataFrame:
    """``rows`` completed into a layer-wise PID table (unused columns filled)."""
    fill = {
        "model": "m",
        "task": "ChooseAttr",
        "n_layers": 8,
        "lo": np.nan,
        "hi": np.nan,
        "n": 100,
        "dims_1": 1,
        "dims_2": 1,
        "dims_y": 1,
        "seed": 0,
        "no_interval": False,
    }
    df = pd.DataFrame([{**fill, **r} for r in rows])
    df["depth"] = df["layer"] / df["n_layers"]
    return df[[*COLUMNS, *[c for c in df.columns if c not in COLUMNS]]]


def _trajectories(models: dict[str, np.ndarray]) -> pd.DataFrame:
    """A layer-wise MMI table whose four atoms follow each model's given curve (bits)."""
    rows = []
    for model, curve in models.items():
        for k, atom in enumerate(["redundancy", "unique_1", "unique_2", "synergy", "total"]):
            for layer, v in enumerate(curve * (k + 1)):
                rows.append(
                    {
                        "model": model,
                        "task": "ChooseAttr",
                        "layer": layer,
                        "n_layers": 8,
                        "depth": layer / 8,
                        "measure": "mmi",
                        "atom": atom,
                        "value": v,
                    }
                )
    return _table(rows)


def test_correlation_baselines_pair_the_sets_as_documented():
    sets = {"A": ["a15", "a16"], "B1": ["b15", "b16"], "B2": ["c15", "c16"]}
    pairs = replicate_pairs(sets)
    assert pairs["cross-model"] == [("a15", "a16"), ("b15", "b16"), ("c15", "c16")]
    assert pairs["same model, other seed"] == [("b15", "c15"), ("b16", "c16")]
    assert pairs["same model, other decoder"] == [
        ("a15", "b15"),
        ("a15", "c15"),
        ("a16", "b16"),
        ("a16", "c16"),
    ]
    x = np.linspace(0, 1, 9)
    curves = {"a15": x, "a16": x**2, "b15": 2 * x + 1, "b16": x[::-1], "c15": x, "c16": x}
    base = correlation_baselines(_trajectories(curves), pairs).set_index(["model_a", "model_b"])
    assert base.loc[("a15", "b15"), "r"] == pytest.approx(1.0)  # a linear map keeps r = 1
    assert base.loc[("b16", "c16"), "r"] == pytest.approx(-1.0)
    assert base.loc[("a15", "a16"), "r"] == pytest.approx(np.corrcoef(x, x**2)[0, 1])


def _prior_table(values: dict[tuple[float, str], tuple[float, float, float]]) -> pd.DataFrame:
    rows = []
    for (prior, task), (red, half, total_lo) in values.items():
        rows += [
            {
                "prior": prior,
                "task": task,
                "layer": 8,
                "measure": "mmi",
                "atom": "redundancy",
                "value": red,
                "lo": red - half,
                "hi": red + half,
            },
            {
                "prior": prior,
                "task": task,
                "layer": 8,
                "measure": "mmi",
                "atom": "total",
                "value": total_lo + 0.1,
                "lo": total_lo,
                "hi": total_lo + 0.2,
            },
        ]
    return _table(rows)


def test_prior_contrast_and_claim_against_a_hand_computation():
    """Differences of independent estimates add half-widths in quadrature; a task below the
    floor at both priors is left out of the claim; the claim's se pools the tasks'."""
    table = _prior_table(
        {
            (0.0, "ChooseAttr"): (0.10, 0.03, 0.2),
            (0.9, "ChooseAttr"): (0.30, 0.04, 0.5),
            (0.0, "ChooseCat"): (0.05, 0.03, 0.1),
            (0.9, "ChooseCat"): (0.15, 0.03, 0.3),
            (0.0, "LogicalObj"): (0.00, 0.01, 0.01),
            (0.9, "LogicalObj"): (0.9, 0.01, 0.02),
        }
    )
    c = prior_contrast(table, floor=0.05).set_index("task")
    assert c.loc["ChooseAttr", "difference"] == pytest.approx(0.20)
    assert c.loc["ChooseAttr", "hi"] - c.loc["ChooseAttr", "difference"] == pytest.approx(0.05)
    assert c.loc["ChooseAttr", "mde"] == pytest.approx(2.80 * 0.05 / 1.959964)
    assert list(c["measurable"]) == [True, True, False]
    spread = pd.Series([0.2, 0.1], index=["redundancy", "synergy"])
    claims, found = fingerprint_claims(spread, None, c.reset_index())
    se = math.hypot(0.05, math.hypot(0.03, 0.03)) / 1.959964 / 2
    assert found["difference"] == pytest.approx(0.15) and found["se"] == pytest.approx(se)
    assert claims[1].holds is True and claims[1].n_tested == 2 and claims[1].n_pairs == 3
    assert claims[0].holds is None  # one model: "fingerprints differ" cannot be tested


def test_a_difference_with_one_retrained_side_is_widened_by_root_two_of_its_spread():
    """The learned-prior contrast: only the weakest-prior model was retrained on every set, so
    the difference's seed SD is sqrt(2) times that side's (hand computation); with one set
    there is no spread and no interval."""
    c = Claim("Redundancy tracks a learned semantic prior", "", 0.07, 0.02, 0.12, True, "bits",
              rule="lo > 0")  # fmt: skip
    side = {"B1": 0.30, "B2": 0.34, "B3": 0.26}
    table = difference_seed_spread(c, side, "R at p = 0")
    s_r = math.sqrt(2) * float(np.std(list(side.values()), ddof=1))
    expect = widen_by(0.07, 0.02, 0.12, s_r, 2)
    row = table.iloc[0]
    assert (row["lo"], row["hi"], row["df"]) == pytest.approx(expect)
    se = math.hypot(0.1 / (2 * stats.norm.ppf(0.975)), s_r)
    assert row["hi"] - 0.07 == pytest.approx(stats.t.ppf(0.975, 2 * (se / s_r) ** 4) * se)
    assert not row["holds"] and row["build_holds"]  # 0.057 bits of seed SD
    assert np.isnan(row["set B1"]) and "sqrt(2)" in row["how"] and "B2 0.34" in row["how"]
    (widened,) = seed_claims(table, [c], list(side))
    assert widened.detail == row["how"] and widened.lo == row["lo"]
    one = difference_seed_spread(c, {"B1": 0.3}, "R").iloc[0]
    assert np.isnan(one["lo"]) and one["holds"] is None
    # the same core as the replicate widening
    assert widen(0.6, 0.5, 0.7, [0.55, 0.65, 0.6]) == pytest.approx(
        widen_by(0.6, 0.5, 0.7, 0.05, 2)
    )


def test_set_claims_include_the_fingerprint_spread_by_hand():
    """Two models with the same fingerprints on two tasks with mirrored ones: the shares differ
    across tasks by |s_A - s_B| / sqrt(2) per atom (0.3, 0.1, 0.1, 0.3) and not across models,
    so the spread claim's excess is 0.2 / sqrt(2) and it holds."""
    from pidlib.analysis.seeds import set_claims

    fingerprint = {"A": [0.1, 0.2, 0.3, 0.4], "B": [0.4, 0.3, 0.2, 0.1]}
    rows = []
    for model in ("a", "b"):
        for task, sh in fingerprint.items():
            for layer in range(9):
                total = 1.0 + layer
                for atom, s in zip(["redundancy", "unique_1", "unique_2", "synergy", "total"],
                                   [*sh, 1.0], strict=True):  # fmt: skip
                    rows.append({"model": model, "task": task, "layer": layer, "measure": "mmi",
                                 "atom": atom, "value": s * total})  # fmt: skip
    claims = {c.claim: c for c in set_claims(_table(rows), ["a", "b"], floor=0.05)}
    spread = claims["Fingerprints differ by task"]
    assert spread.value == pytest.approx(0.2 / math.sqrt(2)) and spread.holds is True
    assert "Layer-wise trajectories agree across the two models" in claims
    one = {c.claim: c for c in set_claims(_table(rows), ["a"], floor=0.05)}
    assert one["Fingerprints differ by task"].holds is None  # one model: nothing to compare


def test_prior_side_reads_the_weakest_prior_family_of_every_set():
    from pidlib.book.priors import prior_side
    from pidlib.config.profiles import load_profile

    cfg = load_profile("cpu")
    reps = {}
    for k, (label, models) in enumerate(
        zip(cfg.seeds.set_labels(), cfg.seeds.matching(cfg.models), strict=True)
    ):
        rows = [{"model": m, "task": t, "layer": 8, "measure": "mmi", "atom": "redundancy",
                 "value": 0.1 * (k + 1) + 0.01 * j + (0.5 if t == "ChooseRel" else 0)}
                for j, m in enumerate(models) for t in ("CompareAttr", "ChooseRel")]  # fmt: skip
        reps[label] = _table(rows)
    side = prior_side(cfg, reps, ["CompareAttr"], 8)
    # tiny-llava-1.5-b1 (p = 0) is the first model of set B1, so the 1.5 family of each set
    assert side == pytest.approx({"B1": 0.1, "B2": 0.2, "B3": 0.3})
    assert prior_side(cfg, reps, [], 8) == {}


def test_a_correlation_widened_across_seeds_stays_within_minus_one_and_one():
    unit = "Spearman rho(clean R share, Δ U_V)"
    c = Claim("weakest on high-redundancy tasks", "", 0.77, 0.1, 0.97, False, unit, rule="hi < 0")
    sets = {k: [replace(c, value=v)] for k, v in {"B1": 0.2, "B2": 0.9, "B3": -0.3}.items()}
    row = with_seed_spread([c], sets).iloc[0]
    raw = widen(0.77, 0.1, 0.97, [0.2, 0.9, -0.3])
    assert raw[1] > 1 and row["hi"] == 1.0 and row["lo"] == pytest.approx(max(raw[0], -1.0))
    bits = replace(c, unit="bits")  # anything else is not clipped
    assert with_seed_spread([bits], sets).iloc[0]["hi"] == pytest.approx(raw[1])


def test_the_cross_model_correlation_averages_only_the_tasks_given():
    """A task without measurable information has noise trajectories; its r must not enter the
    claim when the chapter names the tasks above the floor."""
    from pidlib.analysis.claims import transduction_claims

    atoms = ["redundancy", "unique_1", "unique_2", "synergy"]
    rows = [(t, a, r + 0.01 * k) for t, r in (("A", 0.9), ("B", -0.5))
            for k, a in enumerate(atoms)]  # fmt: skip
    corr = pd.DataFrame(rows, columns=["task", "atom", "r"])
    peaks = pd.DataFrame({"depth": [0.2], "measurable": [True]})
    last = pd.DataFrame({"unique_2": [0.8], "synergy": [0.01], "measurable": [True]})
    every = transduction_claims(peaks, last, corr, 0.05)[-1]
    only_a = transduction_claims(peaks, last, corr, 0.05, corr_tasks=["A"])[-1]
    assert every.value == pytest.approx(corr["r"].mean()) and "2 of 2 tasks" in every.detail
    assert only_a.value == pytest.approx(0.915) and "1 of 2 tasks" in only_a.detail


def test_an_asymmetric_interval_is_widened_on_each_side_and_never_narrowed():
    """A Fisher-z interval of rho = 0.71 is [-0.26, 0.97]: widening it symmetrically around
    the value would raise its lower end; each side is widened on its own instead."""
    lo, hi, df = widen_by(0.714, -0.263, 0.968, 0.1, 2)
    z = stats.norm.ppf(0.975)
    for half, got in ((0.714 + 0.263, 0.714 - lo), (0.968 - 0.714, hi - 0.714)):
        se = math.hypot(half / z, 0.1)
        assert got == pytest.approx(stats.t.ppf(0.975, 2 * (se / 0.1) ** 4) * se)
        assert got > half
    assert df == pytest.approx(2 * (math.hypot(0.254 / z, 0.1) / 0.1) ** 4)
