"""F1: OOD success peaks early in SFT and declines, the peak does not show in the losses, and RL from a
moderately trained checkpoint restores most of what SFT lost, from the most overfitted one not."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sftrl import stats
from sftrl.claims import verdicts
from sftrl.claims.evidence import Evidence, choose_peak, roles_peak
from sftrl.claims.inputs import ClaimInputs, RlStart, ood_episodes, rl_starts
from sftrl.claims.representations import check_representations
from sftrl.claims.verdicts import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SEED_TEST,
    SUPPORTED,
    Check,
    ClaimSettings,
    Finding,
    combine,
)
from sftrl.curves import CurvePoint, ood_curve
from sftrl.stats import ALPHA, MIN_SEEDS, RECOMMENDED_SEEDS, Comparison, Recovery

STATEMENT = (
    "RL-FT restores most of the OOD accuracy lost during SFT when it starts from a moderately trained SFT "
    "checkpoint; from a severely overfitted checkpoint it cannot. OOD accuracy peaks early in SFT and then "
    "declines, and the peak is not visible in the training or test loss."
)


def check_peak(
    points: Sequence[CurvePoint], base: CurvePoint | None, evidence: Evidence
) -> tuple[Check, CurvePoint | None]:
    claim = "OOD success peaks before the end of SFT and then declines"
    test = "the best SFT checkpoint before the last one against the last one, one-sided at α = 0.05: " + (
        "exact McNemar test on the report half of the OOD episodes"
        if evidence.paired
        else "score test of two proportions"
    )
    if len(points) < 2:
        return Check("F1.peak", claim, INCONCLUSIVE, f"{len(points)} SFT checkpoint(s): no curve to peak", test), None
    end = points[-1]
    best = choose_peak(points[:-1], evidence)
    best_arm = evidence.arm(best.model, best.ood.rate, best.ood.n, half=True)
    end_arm = evidence.arm(end.model, end.ood.rate, end.ood.n, half=True)
    comparison = evidence.compare(end_arm, best_arm)
    evidence_lines = [
        f"best before the end (chosen on {'the selection half' if evidence.paired else 'all episodes'}): step {best.step}; "
        f"measured: OOD {verdicts.arm_text(best_arm)}",
        f"end: step {end.step}, OOD {verdicts.arm_text(end_arm)}",
        f"{comparison.text()}; one-sided p = {comparison.p_greater:.3g}",
        evidence.selection_note,
    ]
    numbers: dict[str, Any] = {"peak_step": best.step, "end_step": end.step, "comparison": comparison.to_dict()}
    if base:
        base_arm = evidence.arm(base.model, base.ood.rate, base.ood.n, half=True)
        early = evidence.compare(base_arm, best_arm)
        evidence_lines.append(
            f"early part against the base: {early.text()}; one-sided p (peak above base) = {early.p_greater:.3g}"
        )
        numbers["base_comparison"] = early.to_dict()
    verdict = verdicts.p_verdict(comparison.p_greater, comparison.p_less)
    reason = {
        SUPPORTED: f"step {best.step} lies above the end (p = {comparison.p_greater:.3g} < {ALPHA})",
        NOT_SUPPORTED: f"the end lies above every earlier checkpoint's best (p = {comparison.p_less:.3g} < {ALPHA}): OOD still rises",
        INCONCLUSIVE: f"no significant difference between step {best.step} and the end (p = {comparison.p_greater:.3g})",
    }[verdict]
    detectable = f"a drop of {verdicts.points_text(comparison.detectable)} from the peak to the end"
    p = verdicts.decisive_p(verdict, comparison.p_greater, comparison.p_less)
    check = Check(
        "F1.peak", claim, verdict, reason, test, evidence_lines, numbers, detectable, comparison.effect_text(), p
    )
    return check, best


def _argmin(history: Sequence[Mapping[str, Any]], key: str) -> tuple[int, float] | None:
    values = [(int(row["step"]), float(row[key])) for row in history if verdicts.num(row.get(key)) is not None]
    if not values:
        return None
    return min(values, key=lambda item: (item[1], item[0]))


LOSSES = (("training", "loss"), ("test (ID unseen)", "eval_id_unseen_loss"), ("OOD", "eval_ood_loss"))


def peak_window(points: Sequence[CurvePoint], best: CurvePoint, evidence: Evidence) -> tuple[int | None, int | None]:
    """The nearest checkpoints before and after the peak whose OOD lies below it (one-sided test at α,
    report half; None: none on that side); between them OOD cannot be told apart from the peak."""
    best_arm = evidence.arm(best.model, best.ood.rate, best.ood.n, half=True)

    def below(p: CurvePoint) -> bool:
        arm = evidence.arm(p.model, p.ood.rate, p.ood.n, half=True)
        return evidence.compare(arm, best_arm).p_greater < ALPHA

    at = [p.step for p in points].index(best.step)
    left = next((p.step for p in reversed(points[:at]) if below(p)), None)
    right = next((p.step for p in points[at + 1 :] if below(p)), None)
    return left, right


def check_loss(
    points: Sequence[CurvePoint],
    history: Sequence[Mapping[str, Any]],
    peak_check: Check,
    best: CurvePoint | None,
    evidence: Evidence,
) -> Check:
    claim = "the OOD peak is not visible in the training or test loss (the OOD loss the authors logged as test loss)"
    test = (
        "the steps of the minimum training loss, held-out ID loss and OOD loss against the window around the OOD "
        f"peak where OOD success is not significantly below the peak (one-sided tests at α = {ALPHA})"
    )
    found = {label: _argmin(history, key) for label, key in LOSSES}
    evidence_lines = [f"{label} loss: minimum {f[1]:.4g} at step {f[0]}" for label, f in found.items() if f]
    numbers: dict[str, Any] = {
        f"{key}_min_step": f[0] for (label, key), f in zip(LOSSES, found.values(), strict=False) if f
    }
    if found["training"] is None or (found["test (ID unseen)"] is None and found["OOD"] is None):
        return Check(
            "F1.loss", claim, INCONCLUSIVE, "the SFT log holds no training or test loss", test, evidence_lines, numbers
        )
    if peak_check.verdict != SUPPORTED or best is None:
        return Check(
            "F1.loss",
            claim,
            INCONCLUSIVE,
            "the OOD peak itself is not established (F1.peak)",
            test,
            evidence_lines,
            numbers,
            "as F1.peak",
        )
    left, right = peak_window(points, best, evidence)
    numbers.update(peak_step=best.step, window=[left, right])
    evidence_lines.append(
        f"OOD peak at step {best.step}; not significantly below it between steps "
        f"{left if left is not None else 'start'} and {right if right is not None else 'end'} (exclusive)"
    )

    def inside(step: int) -> bool:
        return (left is None or step > left) and (right is None or step < right)

    shown = [label for label, f in found.items() if f and inside(f[0])]
    detectable = "as F1.peak (the window's edges are where OOD falls significantly below the peak)"
    if shown:
        return Check(
            "F1.loss",
            claim,
            NOT_SUPPORTED,
            f"the {' and '.join(shown)} loss minimum lies in the peak window",
            test,
            evidence_lines,
            numbers,
            detectable,
        )
    return Check(
        "F1.loss",
        claim,
        SUPPORTED,
        "no loss has its minimum in the window of the OOD peak",
        test,
        evidence_lines,
        numbers,
        detectable,
    )


@dataclass
class _StartEvidence:
    start: RlStart
    loss: Comparison  # the peak against the start checkpoint (report half)
    raised: Comparison  # after RL against before (all episodes), over seeds where there are two or more
    recovery: Recovery  # report half, over seeds where there are two or more
    loss_p: float = math.nan  # Holm-adjusted over the starts after the peak

    @property
    def lost(self) -> bool:
        return self.loss_p < ALPHA

    @property
    def replicated(self) -> bool:
        """Whether RL from this start ran with enough seeds for a test of RL rather than of one run."""
        return self.start.seeds >= MIN_SEEDS

    def line(self) -> str:
        s = self.start
        runs = (
            f"seeds {s.seeds_text()}%, mean {100 * s.after:.1f}%" if s.seeds > 1 else f"{100 * s.after:.1f}% (one run)"
        )
        return (
            f"{s.algorithm} from step {s.step}: OOD {100 * s.before:.1f}% → {runs} "
            f"(all {self.raised.n} episodes: {self.raised.text()}, one-sided p = {self.raised.p_greater:.3g}); "
            f"loss from the peak {100 * self.loss.diff:.1f} points, Holm p = {self.loss_p:.3g}; report half: {self.recovery.text()}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_step": self.start.step,
            "seeds": self.start.seeds,
            "before": self.start.before,
            "after": self.start.after,
            "after_per_seed": list(self.start.afters),
            "loss": self.loss.to_dict(),
            "loss_p_holm": self.loss_p,
            "lost": self.lost,
            "raised": self.raised.to_dict(),
            "recovery": asdict(self.recovery),
        }


def _start_evidence(
    starts: Sequence[RlStart], best: CurvePoint, n: int, evidence: Evidence, threshold: float
) -> list[_StartEvidence]:
    peak_arm = evidence.arm(best.model, best.ood.rate, best.ood.n, half=True)
    items = []
    for start in starts:
        before_half = evidence.arm(start.start_model, start.before, n, half=True)
        before = evidence.arm(start.start_model, start.before, n)
        items.append(
            _StartEvidence(
                start,
                evidence.compare(before_half, peak_arm),
                evidence.rl_effect(before, evidence.runs(start, n)),
                evidence.rl_recovery(evidence.runs(start, n, half=True), before_half, peak_arm, threshold),
            )
        )
    for item, p in zip(items, stats.holm([i.loss.p_greater for i in items]), strict=False):
        item.loss_p = p
    return items


def seed_note(seeds: int, algorithms: Sequence[str]) -> str | None:
    """What the dry run says when `rl.seeds` has fewer seeds than the RL checks need: which checks are
    inconclusive by construction (None: enough seeds)."""
    if seeds >= MIN_SEEDS:
        return None
    checks = ", ".join(f"F1.{kind}.{a}" for a in algorithms for kind in ("rl_raises", "rl_most", "rl_late"))
    return (
        f"rl.seeds has {seeds} seed: {checks} will be inconclusive by construction (one run's change says "
        f"nothing of another seed's); they need at least {MIN_SEEDS} seeds, {RECOMMENDED_SEEDS} recommended. "
        "F4's rank tests over starts do not."
    )


def unreplicated_detectable(seeds: int) -> str:
    return f"no effect of RL at all from {seeds} seed(s) per start"


def unreplicated_reason(seeds: int) -> str:
    """Why an RL check is inconclusive by construction with too few seeds."""
    return (
        f"{seeds} RL seed(s) per start: one run's change says nothing of another seed's, so RL's effect cannot "
        f"be told from the run's; the check needs at least {MIN_SEEDS} seeds ({RECOMMENDED_SEEDS} recommended, rl.seeds)"
    )


def check_rl_recovery(
    algorithm: str, starts: Sequence[RlStart], best: CurvePoint, n: int, settings: ClaimSettings, evidence: Evidence
) -> list[Check]:
    """F1 on RL: from a moderate start (after the OOD peak; not the latest of two or more) RL raises the OOD
    success SFT lost, and restores most of it; from the latest start it does not restore most."""
    threshold = settings.most_recovered_pct
    later = [s for s in starts if s.step > best.step]
    items = _start_evidence(later, best, n, evidence, threshold)
    late = items[-1] if len(items) >= 2 else None
    moderate = items[:-1] if len(items) >= 2 else items
    informative = [i for i in moderate if i.lost]
    replicated = [i for i in informative if i.replicated]
    lines = [i.line() for i in moderate]
    numbers = {"starts": [i.to_dict() for i in moderate], "peak_step": best.step}
    no_start = f"no RL start after the OOD peak (step {best.step})"
    nothing = "no moderate start lost OOD success significantly (Holm over the starts): nothing measurable to recover"
    loss_detectable = "a loss of " + ", ".join(
        f"{verdicts.points_text(i.loss.detectable)} (step {i.start.step})" for i in moderate
    )
    name = algorithm.upper()

    def without_evidence(check_id: str, claim: str, test: str) -> Check:
        """Inconclusive: no moderate start lost OOD success, or none of them can be tested, or RL from them
        ran with too few seeds."""
        reason, detectable = (nothing, loss_detectable) if moderate else (no_start, "")
        if informative and not replicated:
            seeds = max(i.start.seeds for i in informative)
            reason, detectable = unreplicated_reason(seeds), unreplicated_detectable(seeds)
        return Check(check_id, claim, INCONCLUSIVE, reason, test, lines, numbers, detectable)

    def family_check(
        check_id: str,
        claim: str,
        test: str,
        p_values: Callable[[_StartEvidence], tuple[float, float]],
        reasons: Callable[[list[float], list[float]], dict[str, str]],
        effect: str,
        effect_at: Callable[[_StartEvidence], str],
        measured: Callable[[_StartEvidence], str],
    ) -> Check:
        """A claim on the moderate starts that lost OOD success and ran with seeds, Holm-corrected over them
        (`family_verdict`): `p_values` gives a start's p-values for and against the claim, `reasons` the
        reason of each verdict from the adjusted ones, `effect` and `effect_at` the detectable effect,
        `measured` a start's measured effect (shown for the start the verdict rests on)."""
        if not replicated:
            return without_evidence(check_id, claim, test)
        pairs = [p_values(i) for i in replicated]
        verdict, p_for, p_against = verdicts.family_verdict([p for p, _ in pairs], [p for _, p in pairs])
        detectable = effect + ", ".join(f"{effect_at(i)} (step {i.start.step})" for i in replicated)
        reason = reasons(p_for, p_against)[verdict]
        # the start the verdict rests on: the weakest against the claim where it fails, else the strongest for it
        at = int(np.argmax(p_against)) if verdict == NOT_SUPPORTED else int(np.argmin(p_for))
        p = p_against[at] if verdict == NOT_SUPPORTED else p_for[at]
        shown = f"{measured(replicated[at])} (step {replicated[at].start.step})"
        return Check(check_id, claim, verdict, reason, test, lines, numbers, detectable, shown, p)

    checks = [
        family_check(
            f"F1.rl_raises.{algorithm}",
            f"{name} from a moderately trained checkpoint raises the OOD success SFT lost",
            f"after RL against its start checkpoint on all OOD episodes, one-sided t test over {SEED_TEST[evidence.paired]}, "
            f"Holm over the moderate starts that lost OOD success to the peak (step {best.step})",
            lambda i: (i.raised.p_greater, i.raised.p_less),
            lambda p_for, _: {
                SUPPORTED: f"RL raises OOD success from step {replicated[int(np.argmin(p_for))].start.step} (Holm p = {min(p_for):.3g})",
                NOT_SUPPORTED: "RL lowers OOD success from every moderate start that lost it (Holm p < 0.05)",
                INCONCLUSIVE: f"no significant rise (smallest Holm p = {min(p_for):.3g})",
            },
            "a rise of ",
            lambda i: verdicts.points_text(i.raised.detectable),
            lambda i: i.raised.effect_text(),
        ),
        family_check(
            f"F1.rl_most.{algorithm}",
            f"{name} from a moderately trained checkpoint restores most (≥ {threshold:g}%) of the OOD success SFT lost",
            f"recovery % against the SFT peak (step {best.step}) on the report half, one-sided t test of its contrast at "
            f"{threshold:g}% over {SEED_TEST[evidence.paired]}, Holm over the moderate starts that lost OOD success",
            lambda i: (i.recovery.p_below, i.recovery.p_above),
            lambda p_for, p_against: {
                SUPPORTED: f"a moderate start's recovery lies above {threshold:g}% (Holm p = {min(p_for):.3g})",
                NOT_SUPPORTED: f"every moderate start's recovery lies below {threshold:g}% (Holm p ≤ {max(p_against):.3g})",
                INCONCLUSIVE: f"no recovery is significantly above or every one below {threshold:g}%",
            },
            "a recovery ",
            lambda i: verdicts.recovery_text(i.recovery.detectable, threshold),
            lambda i: i.recovery.text(),
        ),
    ]

    claim = f"{name} from the most overfitted start cannot restore most of it"
    test = (
        f"recovery % of the latest start on the report half against {threshold:g}%, one-sided t test of its contrast "
        f"over {SEED_TEST[evidence.paired]}"
    )
    if late is None:
        reason = (
            no_start if not items else "only one start after the OOD peak: no later, more overfitted start to contrast"
        )
        checks.append(Check(f"F1.rl_late.{algorithm}", claim, INCONCLUSIVE, reason, test))
        return checks
    if not late.lost:
        verdict, reason = INCONCLUSIVE, "the latest start did not lose OOD success significantly"
    elif not late.replicated:
        verdict, reason = INCONCLUSIVE, unreplicated_reason(late.start.seeds)
    else:
        verdict = verdicts.p_verdict(late.recovery.p_above, late.recovery.p_below)
        reason = {
            SUPPORTED: f"its recovery lies below {threshold:g}% (p = {late.recovery.p_above:.3g})",
            NOT_SUPPORTED: f"its recovery lies above {threshold:g}% (p = {late.recovery.p_below:.3g})",
            INCONCLUSIVE: f"its recovery is not significantly below or above {threshold:g}%",
        }[verdict]
    detectable = (
        f"a loss of {verdicts.points_text(late.loss.detectable)}"
        if not late.lost
        else f"a recovery {verdicts.recovery_text(late.recovery.detectable, threshold)}"
        if late.replicated
        else unreplicated_detectable(late.start.seeds)
    )
    checks.append(
        Check(
            f"F1.rl_late.{algorithm}",
            claim,
            verdict,
            reason,
            test,
            [late.line()],
            {"start": late.to_dict(), "peak_step": best.step},
            detectable,
            late.recovery.text() if late.lost and late.replicated else f"loss {late.loss.effect_text()}",
            verdicts.decisive_p(verdict, late.recovery.p_above, late.recovery.p_below)
            if late.lost and late.replicated
            else None,
        )
    )
    return checks


def finding_1(inputs: ClaimInputs, settings: ClaimSettings, evidence: Evidence) -> Finding:
    points, base = ood_curve(inputs.curve)
    peak_check, best = check_peak(points, base, evidence)
    checks = [peak_check, check_loss(points, inputs.history, peak_check, best, evidence)]
    if points:
        sft_peak = roles_peak(points, inputs.roles, evidence)
        starts = rl_starts(inputs.rl, settings.algorithms, settings.rl_update)
        for algorithm, items in starts.items():
            checks += check_rl_recovery(algorithm, items, sft_peak, ood_episodes(points), settings, evidence)
        if not starts:
            checks.append(
                Check(
                    "F1.rl",
                    "RL restores OOD success from moderate starts",
                    INCONCLUSIVE,
                    "no RL runs in the table",
                    "-",
                )
            )
    checks += check_representations(inputs.representations)
    return Finding("F1", STATEMENT, combine(c.verdict for c in checks), checks)
