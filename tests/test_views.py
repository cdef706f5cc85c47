"""The transduction chapter's extra views: probes, the last-position PID, target robustness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pidlib.analysis.lastview import VIEWS, formation, last_pid, probe_accuracy, probe_table
from pidlib.analysis.robustness import (
    pid_by_target,
    robustness_sentence,
    robustness_table,
    target_claims,
    with_robustness,
)
from pidlib.config.profiles import PIDSpec
from pidlib.config.views import LastPositionSpec, RobustnessSpec, strided_layers
from pidlib.core.cache import ArrayCache
from pidlib.extract.features import Features


def _labels_and_views(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sign = 2.0 * y - 1.0
    strong = rng.normal(size=(n, 6)) + 3.0 * sign[:, None] * np.eye(6)[0]
    weak = rng.normal(size=(n, 6)) + 0.5 * sign[:, None] * np.eye(6)[0]
    none = rng.normal(size=(n, 6))
    return y, strong, weak, none


def test_probe_recovers_a_known_accuracy_ordering():
    y, strong, weak, none = _labels_and_views()
    a_strong, a_weak, a_none = (probe_accuracy(x, y, seed=0) for x in (strong, weak, none))
    # Bayes accuracies: Phi(3) = 0.999, Phi(0.5) = 0.69, chance 0.5
    assert a_strong > 0.97 and 0.6 < a_weak < 0.78 and abs(a_none - 0.5) < 0.08
    assert a_strong > a_weak > a_none
    assert probe_accuracy(weak, y, seed=0) == a_weak  # seeded: the same folds every time
    assert np.isnan(probe_accuracy(strong, np.zeros(len(y), int)))  # one class: undefined


def _features(n: int = 160, n_layers: int = 3, model: str = "m", task: str = "ChooseAttr",
              seed: int = 0) -> Features:  # fmt: skip
    """The answer enters Last from layer 2 on; V and L are noise; logits follow the answer."""
    rng = np.random.default_rng(seed)
    choice = rng.integers(0, 2, n)
    sign = 2.0 * choice - 1.0
    d = 4
    V, L = rng.normal(size=(n, n_layers + 1, d)), rng.normal(size=(n, n_layers + 1, d))
    Last = rng.normal(size=(n, n_layers + 1, d))
    Last[:, 0] = 1.0  # the embedding of the same template token: constant
    Last[:, 2:, 0] += 3.0 * sign[:, None]
    logit = 2.0 * sign + rng.normal(size=n) * 0.5
    options = np.array([["blue", "red"] if i % 2 else ["red", "blue"] for i in range(n)])
    return Features(
        model, task, V=V.astype(np.float32), L=L.astype(np.float32),
        option_logits=np.stack([logit, -logit], 1).astype(np.float32),
        last_hidden=Last[:, -1].astype(np.float32), prob=np.full(n, 0.5, np.float32),
        answer=np.array(["a"] * n), correct=np.ones(n, bool), choice=choice.astype(np.int64),
        gold=choice.astype(np.int64), qid=np.array([f"q{i}" for i in range(n)]),
        options=options, Last=Last.astype(np.float32),
    )  # fmt: skip


def test_probe_table_and_formation_find_the_planted_layer(tmp_path):
    feats = {("m", "ChooseAttr"): _features()}
    spec = LastPositionSpec(probe_folds=4, formed_at=0.9)
    store = ArrayCache(tmp_path)
    table = probe_table(feats, spec, cache=store)
    assert set(table["view"]) == set(VIEWS) and sorted(set(table["layer"])) == [0, 1, 2, 3]
    acc = table.pivot(index="layer", columns="view", values="accuracy")
    assert (acc.loc[2:, "Last"] > 0.95).all() and (acc.loc[:1, "Last"] < 0.7).all()
    assert (acc[["V", "L", "[V, L]"]] < 0.7).all().all()
    again = probe_table(feats, spec, cache=store)  # from the cache
    pd.testing.assert_frame_equal(table, again)
    (row,) = formation(table, spec.formed_at).to_dict("records")
    assert row["layer"] == 2 and row["Last at layer"] > 0.95 and row["V at layer"] < 0.7


def test_last_pid_skips_a_constant_last_and_sees_its_information(tmp_path):
    feats = {("m", "ChooseAttr"): _features()}
    pid = PIDSpec(measures=("mmi",), flow=False, n_bootstrap=4, n_seeds=1, max_dims=4)
    table = last_pid(feats, LastPositionSpec(), pid, cache=ArrayCache(tmp_path))
    assert sorted(set(table["layer"])) == [1, 2, 3]  # layer 0: Last is constant
    mi = table[table["atom"] == "mi_1"].set_index("layer")["value"]
    assert mi[3] > 1.0 > 0.2 > mi[1]


def test_robustness_table_has_a_row_per_claim_and_a_column_per_target(tmp_path):
    feats = {(m, t): _features(model=m, task=t, seed=i)
             for i, (m, t) in enumerate([("a", "ChooseAttr"), ("b", "ChooseAttr")])}  # fmt: skip
    spec = RobustnessSpec(targets=("logits", "canonical", "margin"), n_bootstrap=4)
    pid = PIDSpec(max_dims=4)
    tables = pid_by_target(feats, spec, pid, cache=ArrayCache(tmp_path))
    assert list(tables) == list(spec.targets)
    for t in spec.targets:
        assert set(tables[t]["measure"]) == {"mmi"} and set(tables[t]["layer"]) == {0, 1, 2, 3}
    verdicts = target_claims(tables, floor=0.05)
    table = robustness_table(verdicts, verdicts["logits"])
    assert len(table) == len(verdicts["logits"]) == 4  # two models: the correlation claim too
    assert table.shape[1] == 1 + len(spec.targets)
    assert all(c.split(":")[0] in ("holds", "does not hold", "not tested")
               for c in table.to_numpy().ravel())  # fmt: skip
    assert "claims keep one verdict" in robustness_sentence(verdicts)
    annotated = with_robustness(verdicts["logits"], verdicts)
    assert [c.claim for c in annotated] == [c.claim for c in verdicts["logits"]]
    first = annotated[0].robustness.split("; ")
    assert [part.split(":")[0] for part in first] == list(spec.targets)
    assert (
        first[0].split(": ")[1]
        == {True: "holds", False: "does not hold", None: "not tested"}[verdicts["logits"][0].holds]
    )


def test_strided_layers_keep_the_last():
    assert strided_layers(8, 1) == tuple(range(9))
    assert strided_layers(8, 3) == (0, 3, 6, 8)
    with pytest.raises(ValueError, match="robustness.targets"):
        RobustnessSpec(targets=("nope",)).validate()


def test_the_redundancy_relation_uses_the_pairs_above_the_floor():
    """Pairs below the information floor have no redundancy share (NaN); one NaN made the
    Spearman rho NaN and the claim untestable on every profile."""
    from pidlib.analysis.claims import knockout_claims

    share = [0.1, 0.2, np.nan, 0.4, np.nan, 0.6]
    d_uv = [0.6, 0.5, 0.9, 0.3, 0.2, 0.1]
    per_task = pd.DataFrame({"transforms": "refit", "model": "m", "task": list("abcdef"),
                             "clean R share": share, "ΔU_V (late layers)": d_uv,
                             "ΔS (all layers)": 0.0, "ΔI(V,L;Y) (all layers)": 0.0})  # fmt: skip
    curves = pd.DataFrame({"flow": "image->question", "model": "m", "task": list("abcdef"),
                           "rel_change": -1.0})  # fmt: skip
    claims, found = knockout_claims(per_task, curves)
    r, p, used, pairs = found["variants"]["refit"][3]
    assert (used, pairs) == (4, 6) and r == pytest.approx(-1.0)
    relation = [c for c in claims if c.unit.startswith("Spearman")][0]
    assert (relation.n_tested, relation.n_pairs) == (4, 6) and relation.holds is True
    per_task.loc[[0, 1], "clean R share"] = np.nan  # two pairs left: no correlation
    r, _, used, _ = knockout_claims(per_task, curves)[1]["variants"]["refit"][3]
    assert used == 2 and r != r


def test_knockout_claims_are_tested_on_the_pairs_with_measurable_clean_information():
    """A (model, task) pair whose clean I(V,L;Y) never passes the floor has nothing to trap:
    ``knockout_per_task`` marks it, and the claims average and correlate the other pairs only,
    saying how many."""
    from pidlib.analysis.claims import knockout_claims, spearman_interval
    from pidlib.analysis.summaries import knockout_per_task

    tasks, totals = list("abcdef"), [0.5, 0.4, 0.3, 0.2, 0.01, 0.0]  # e, f below a 0.05 floor
    clean, deltas = [], []
    for t, total, r in zip(tasks, totals, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], strict=True):
        for layer in range(3):
            for atom, v in [("total", total), ("redundancy", r * total), ("unique_1", 0.0),
                            ("unique_2", (1 - r) * total), ("synergy", 0.0)]:  # fmt: skip
                clean.append({"model": "m", "task": t, "layer": layer, "measure": "mmi",
                              "atom": atom, "value": v, "lo": v - 0.001})  # fmt: skip
                d = {"unique_1": 1.0 - r, "synergy": 0.01, "total": 0.02}.get(atom, 0.0)
                deltas.append({"model": "m", "task": t, "layer": layer, "depth": layer / 2,
                               "measure": "mmi", "atom": atom, "delta": d,
                               "transforms": "refit"})  # fmt: skip
    per_task = knockout_per_task(pd.DataFrame(deltas), pd.DataFrame(clean), floor=0.05)
    assert list(per_task["measurable"]) == [True] * 4 + [False] * 2
    assert per_task["clean R share"].isna().tolist() == [False] * 4 + [True] * 2
    claims, found = knockout_claims(per_task)
    d_uv = found["variants"]["refit"][0]
    assert d_uv[0] == pytest.approx(np.mean([0.9, 0.8, 0.7, 0.6]))  # the four measurable pairs
    assert all((c.n_tested, c.n_pairs) == (4, 6) for c in claims)
    relation = claims[-1]
    r, lo, hi, _ = spearman_interval([0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.6])
    assert relation.value == pytest.approx(-1.0) and (relation.lo, relation.hi) == (lo, hi)
    assert relation.holds is True and relation.rule == "hi < 0"
    assert np.isnan(found["acc_drop"][0])  # no sweep given


def test_spearman_interval_is_fisher_z_with_the_spearman_variance():
    from pidlib.analysis.claims import spearman_interval

    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    r, lo, hi, p = spearman_interval(x, y)
    from scipy import stats

    rho, pv = stats.spearmanr(x, y)
    half = stats.norm.ppf(0.975) * np.sqrt(1.06 / 27)
    assert (r, p) == pytest.approx((rho, pv))
    assert (lo, hi) == pytest.approx((np.tanh(np.arctanh(rho) - half),
                                      np.tanh(np.arctanh(rho) + half)))  # fmt: skip
    assert np.isnan(spearman_interval(x[:3], y[:3])[1])  # three pairs: a rho, no interval
    assert all(np.isnan(spearman_interval(x[:2], y[:2])))


def test_refit_rows_only_above_the_floor_still_count_every_pair():
    """The knockout chapter refits PCA and flows only for the pairs ``measurable_pairs`` returns
    (``knockout_per_task``'s ``measurable``); the claims still say "k of K" over every pair."""
    from pidlib.analysis.claims import knockout_claims
    from pidlib.analysis.summaries import knockout_per_task, measurable_pairs

    clean, deltas = [], []
    for (m, t), total in {("m1", "a"): 0.5, ("m1", "b"): 0.01, ("m2", "a"): 0.3,
                          ("m2", "b"): 0.0}.items():  # fmt: skip
        for layer in range(3):
            for atom, v in [
                ("total", total * (layer + 1) / 3),
                ("redundancy", 0.1 * total),
                ("unique_1", 0.0),
                ("unique_2", 0.9 * total),
                ("synergy", 0.0),
            ]:
                clean.append({"model": m, "task": t, "layer": layer, "measure": "mmi",
                              "atom": atom, "value": v, "lo": v - 0.001})  # fmt: skip
                for variant in (
                    ("refit", "clean maps reused") if total > 0.05 else ("clean maps reused",)
                ):
                    deltas.append({"model": m, "task": t, "layer": layer, "depth": layer / 2,
                                   "measure": "mmi", "atom": atom, "delta": 0.1,
                                   "transforms": variant})  # fmt: skip
    clean = pd.DataFrame(clean)
    assert measurable_pairs(clean, 0.05) == (("m1", "a"), ("m2", "a"))
    assert measurable_pairs(clean, 0.6) == ()
    per_task = knockout_per_task(pd.DataFrame(deltas), clean, floor=0.05)
    flagged = per_task.loc[per_task["measurable"], ["model", "task"]].drop_duplicates()
    assert set(map(tuple, flagged.to_numpy())) == set(measurable_pairs(clean, 0.05))
    claims, _ = knockout_claims(per_task)
    assert {(c.n_tested, c.n_pairs) for c in claims if not c.unit.startswith("Spearman")} == {
        (2, 4)
    }
