"""The claims' inputs: the result tables as the workflow writes them (built here for every claims test),
the RL starts with seeds pooled, and the OOD curve read back as counts of whole episodes."""

import pytest

from sftrl.claims import ClaimSettings, inputs
from sftrl.curves import CurvePoint, Rate, ood_curve
from sftrl.evaluate.metrics import wilson_interval

SETTINGS = ClaimSettings(bootstrap_draws=4000, seed=1)
PEAKED = {10: 0.20, 20: 0.40, 40: 0.30, 80: 0.15, 160: 0.10}  # peak at 20, well above the end


def curve(rates, n, base=None):
    """sft_curve.csv rows of the OOD split (strings, as csv.DictReader gives them)."""
    rows = []
    items = ([(0, base)] if base is not None else []) + list(rates.items())
    for step, rate in items:
        low, high = wilson_interval(round(rate * n), n)
        rows.append(
            {
                "step": str(step),
                "split": "ood",
                "n": str(n),
                "success": str(rate),
                "ci_low": str(low),
                "ci_high": str(high),
            }
        )
        rows.append(
            {"step": str(step), "split": "id", "n": str(n), "success": "0.9", "ci_low": "0.8", "ci_high": "0.95"}
        )
    return rows


def rl(runs, algorithm="ppo"):
    """rl_from_sft.csv rows: runs = {start_step: (before, after)}, after one rate per seed (a tuple) or one
    run's (seed 0)."""
    return [
        {
            "start_step": str(step),
            "algorithm": algorithm,
            "seed": str(seed),
            "split": "ood",
            "before": str(b),
            "after": str(a),
        }
        for step, (b, afters) in runs.items()
        for seed, a in enumerate(afters if isinstance(afters, tuple) else (afters,))
    ]


def seeds(after, spread=0.01):
    """Three seeds' rates about `after`."""
    return (after - spread, after, after + spread)


def history(train, test, ood=None):
    """sft/history.jsonl rows: train loss at every step given, test (ID unseen) and OOD loss where given
    (the OOD loss follows the test loss unless given)."""
    ood = {s: v + 0.1 for s, v in test.items()} if ood is None else ood
    rows = []
    for step in sorted(set(train) | set(test) | set(ood)):
        row = {"step": step}
        if step in train:
            row["loss"] = train[step]
        if step in test:
            row["eval_id_unseen_loss"] = test[step]
        if step in ood:
            row["eval_ood_loss"] = ood[step]
        rows.append(row)
    return rows


def test_seeds_are_kept_in_order_and_algorithms_can_be_chosen():
    rows = [dict(r, seed="10", after="0.37") for r in rl({40: (0.30, 0.39)})] + rl({40: (0.30, 0.39)})
    starts = inputs.rl_starts(rows + rl({40: (0.3, 0.0)}, "grpo"), algorithms=["ppo"])
    assert list(starts) == ["ppo"]
    (start,) = starts["ppo"]
    assert start.models == ("rl-ppo-from40-s0", "rl-ppo-from40-s10") and start.afters == (0.39, 0.37)
    assert start.after == pytest.approx(0.38) and start.seeds == 2 and start.seeds_text() == "39.0 / 37.0"


def test_rates():
    rate = Rate.of(0.0533333, 300)
    assert (rate.k, rate.n) == (16, 300)
    assert rate.ci == pytest.approx((0.03309162538404202, 0.08486983874726851))  # as results/tiny's table
    with pytest.raises(ValueError, match="n > 0"):
        Rate.of(0.5, 0)


def test_the_ood_curve_keeps_the_table_rates_and_sets_the_base_apart():
    points, base = ood_curve(reversed(curve({10: 0.0533333, 20: 0.4}, 300, base=0.1)))
    assert [p.step for p in points] == [10, 20] and base is not None and base.model == "base"
    assert points[0] == CurvePoint(10, 0.0533333, *wilson_interval(16, 300), 300)
    assert points[0].ood == Rate(16, 300) and points[0].model == "sft-10"
    assert inputs.ood_episodes(points) == 300
    with pytest.raises(ValueError, match="bad SFT curve row"):
        ood_curve([{"step": "x", "split": "ood", "n": "1", "success": "0", "ci_low": "0", "ci_high": "0"}])
