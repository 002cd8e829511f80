"""What the checks compare: each model's OOD evidence (per-episode outcomes where samples were given,
else k of n from the tables), and the choice of sft_peak by the rule of `sftrl.peak`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sftrl import peak, stats
from sftrl.claims.inputs import ClaimInputs
from sftrl.claims.verdicts import ClaimSettings
from sftrl.curves import CurvePoint
from sftrl.stats import Arm, Comparison, Counts, Outcomes, Recovery


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

    def pooled(self, models: Sequence[str], label: str, rate: float, n: int, half: bool = False) -> Arm:
        """Several RL seeds of one start: the per-episode mean (outcomes) or the pooled counts (tables)."""
        if not self.outcomes:
            return Counts.of(label, rate, n * len(models))
        return stats.pool([self._outcomes(m, half) for m in models], label)

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
