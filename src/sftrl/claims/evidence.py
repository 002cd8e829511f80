"""What the checks compare: each model's OOD evidence (per-episode outcomes where samples were given,
else k of n from the tables), and the choice of sft_peak by the rule of `sftrl.peak`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sftrl import peak, stats
from sftrl.claims.inputs import ClaimInputs, RlStart
from sftrl.claims.verdicts import ClaimSettings
from sftrl.curves import CurvePoint
from sftrl.stats import Arm, Comparison, Counts, Outcomes, Recovery, SeedRuns


class Evidence:
    """The OOD evidence of each model: per-episode outcomes where samples were given (the whole split,
    or its report half where a gap from the OOD peak is measured), else k of n from the tables."""

    def __init__(self, inputs: ClaimInputs, settings: ClaimSettings):
        self.outcomes = inputs.outcomes
        self.draws, self.seed = settings.bootstrap_draws, settings.seed

    @property
    def paired(self) -> bool:
        return bool(self.outcomes)

    def arm(self, model: str, rate: float, n: int, half: bool = False) -> Arm:
        """The model's evidence; `half`: only the report half of the episodes (needs outcomes)."""
        return self._outcomes(model, half) if self.outcomes else Counts.of(model, rate, n)

    def runs(self, start: RlStart, n: int, half: bool = False) -> SeedRuns:
        """The RL runs (seeds) of one start: their per-episode outcomes, or each seed's rate (tables)."""
        if not self.outcomes:
            return SeedRuns(
                start.label, tuple(Counts.of(m, r, n) for m, r in zip(start.models, start.afters, strict=True))
            )
        return SeedRuns(start.label, tuple(self._outcomes(m, half) for m in start.models))

    def selection_rate(self, point: CurvePoint) -> float:
        """The rate the peak is chosen on: the selection half with outcomes, else the whole split."""
        if not self.outcomes:
            return point.ood.rate
        return float(peak.halves(self._outcomes(point.model))["selection_rate"])

    def _outcomes(self, model: str, half: bool = False) -> Outcomes:
        if model not in self.outcomes:
            raise ValueError(
                f"no per-episode OOD outcomes (samples.jsonl) for {model}: the claims compare it episode by "
                f"episode with models that have them; give its samples too"
            )
        outcomes = self.outcomes[model]
        return outcomes.subset(peak.report_mask(outcomes.uids)) if half else outcomes

    def compare(self, a: Arm, b: Arm) -> Comparison:
        return stats.compare(a, b, self.draws, self.seed)

    def recovery(self, after: Arm, target: Arm, source: Arm, threshold: float) -> Recovery:
        return stats.recovery(after, target, source, threshold, self.draws, self.seed)

    def rl_effect(self, before: Arm, runs: SeedRuns) -> Comparison:
        """RL's runs against their start: over seeds and episodes with enough seeds (`stats.MIN_SEEDS`), else the one run's
        own test (which says nothing of another seed)."""
        return stats.compare_runs(before, runs) if runs.seeds >= stats.MIN_SEEDS else self.compare(before, runs.runs[0])

    def rl_recovery(self, runs: SeedRuns, target: Arm, source: Arm, threshold: float) -> Recovery:
        """Recovery % of RL's runs, over seeds and episodes with enough seeds (`stats.MIN_SEEDS`), else of the one run."""
        if runs.seeds >= stats.MIN_SEEDS:
            return stats.recovery_runs(runs, target, source, threshold)
        return self.recovery(runs.runs[0], target, source, threshold)

    @property
    def selection_note(self) -> str:
        if self.outcomes:
            return "the peak is chosen on the selection half of the OOD episodes and measured on the report half"
        return (
            "no per-episode outcomes: the peak is chosen and measured on the same episodes, so its rate and "
            "the gaps from it are biased upwards"
        )


def choose_peak(points: Sequence[CurvePoint], evidence: Evidence) -> CurvePoint:
    """The best checkpoint by the selection rule of `sftrl.peak`."""
    return points[peak.peak_index([evidence.selection_rate(p) for p in points])]


def roles_peak(points: Sequence[CurvePoint], roles: Mapping[str, Any] | None, evidence: Evidence) -> CurvePoint:
    """sft_peak as roles.json names it (when it is on the curve), else chosen by the same rule here."""
    step = (roles or {}).get("steps", {}).get("sft_peak")
    by_step = {p.step: p for p in points}
    return by_step[step] if step in by_step else choose_peak(points, evidence)
