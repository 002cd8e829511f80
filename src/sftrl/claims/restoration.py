"""F3: putting back sft_peak's singular-vector directions of the top 20% of singular values, or its first
25% of the layers, into sft_end recovers 70-80% of the OOD success SFT lost; directions more than values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sftrl import stats
from sftrl.claims import verdicts
from sftrl.claims.evidence import Evidence
from sftrl.claims.inputs import ClaimInputs
from sftrl.claims.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Check, ClaimSettings, Finding, combine
from sftrl.restoration.spec import EditSpec
from sftrl.stats import ALPHA, Arm

STATEMENT = (
    "Restoring singular-vector directions for the top 20% of singular values, or the first 25% of layers, "
    "recovers 70-80% of the OOD accuracy."
)
RESTORE_TOP = 0.2  # the paper's direction swap: top 20% of the singular values
RESTORE_LAYERS = (0.0, 0.25)  # the paper's layer reset: the first 25% of the layers, as [a, b) fractions


def _is_direction_top(row) -> bool:
    return (
        row["kind"] == "direction"
        and math.isclose(verdicts.num(row["top"]) or 0, RESTORE_TOP)
        and not verdicts.num(row["tail"])
    )


def _is_first_quarter(row) -> bool:
    """A layer reset of the first quarter however the grid wrote it (0.25, "0:0.25", "0.0:0.25")."""
    if row["kind"] != "layer":
        return False
    layers = str(row["layers"])
    try:
        spec = EditSpec("layer", layers=layers if ":" in layers else float(layers))
    except ValueError:  # explicit layer indices, or an EditError
        return False
    return spec.layer_fractions() == RESTORE_LAYERS


def _value_edit(rows):
    values = [row for row in rows if row["kind"] == "value"]
    full = [row for row in values if math.isclose(verdicts.num(row["top"]) or 0, 1.0)]
    return (full or values or [None])[0]


def _edit_model(row: Mapping[str, Any]) -> str:
    return row.get("model") or f"edits/{row['source_role']}__{row['target_role']}/{row['edit']}"


def _edit_arms(row: Mapping[str, Any], evidence: Evidence, half: bool) -> tuple[Arm, Arm, Arm]:
    """(edited, target, source) of one sft_peak → sft_end edit."""
    n = int(row["n"])
    return (
        evidence.arm(_edit_model(row), float(row["success"]), n, half),
        evidence.arm(row["target"], float(row["target_success"]), n, half),
        evidence.arm(row["source"], float(row["source_success"]), n, half),
    )


def finding_3(inputs: ClaimInputs, settings: ClaimSettings, evidence: Evidence) -> Finding:
    threshold = settings.restored_pct
    test = (
        f"recovery % of OOD success of the edited sft_end between sft_end (0%) and sft_peak (100%) on the report half, "
        f"{'paired' if evidence.paired else 'parametric'} bootstrap, one-sided p against {threshold:g}%, Holm over the "
        "two edits; only when sft_peak lies significantly above sft_end"
    )
    rows = [
        row
        for row in inputs.restoration or []
        if row["split"] == "ood" and row["source_role"] == "sft_peak" and row["target_role"] == "sft_end"
    ]
    edits = (
        (
            "F3.direction_top20",
            "putting back sft_peak's singular vectors of the top 20% of singular values recovers ≥ "
            f"{threshold:g}% of the OOD success",
            next((r for r in rows if _is_direction_top(r)), None),
        ),
        (
            "F3.layers_first25",
            f"putting back sft_peak's first 25% of the layers recovers ≥ {threshold:g}% of the OOD success",
            next((r for r in rows if _is_first_quarter(r)), None),
        ),
    )
    if inputs.restoration is None or not rows:
        reason = (
            "the restoration stage was not run (restore.pairs)"
            if inputs.restoration is None
            else "no sft_peak → sft_end edits"
        )
        checks = [Check(check_id, claim, INCONCLUSIVE, reason, test) for check_id, claim, _ in edits]
        checks.append(
            Check("F3.direction_vs_value", "directions recover more than singular values", INCONCLUSIVE, reason, "-")
        )
        return Finding("F3", STATEMENT, INCONCLUSIVE, checks)

    _, target, source = _edit_arms(rows[0], evidence, half=True)
    gap = evidence.compare(target, source)
    gap_line = (
        f"sft_end ({rows[0]['target']}) {verdicts.arm_text(target)}, "
        f"sft_peak ({rows[0]['source']}) {verdicts.arm_text(source)} "
        f"on the report half; gap: {gap.text()}, one-sided p = {gap.p_greater:.3g}"
    )
    no_gap = f"sft_peak is not significantly above sft_end (p = {gap.p_greater:.3g}): no measurable gap to recover"
    gap_detectable = f"a gap of {verdicts.points_text(gap.detectable)} between sft_peak and sft_end"

    present = [(cid, claim, row) for cid, claim, row in edits if row is not None]
    recoveries = {
        cid: evidence.recovery(_edit_arms(row, evidence, True)[0], target, source, threshold) for cid, _, row in present
    }
    p_for = dict(zip(recoveries, stats.holm([r.p_below for r in recoveries.values()]), strict=False))
    p_against = dict(zip(recoveries, stats.holm([r.p_above for r in recoveries.values()]), strict=False))
    checks = []
    for check_id, claim, row in edits:
        if row is None:
            checks.append(Check(check_id, claim, INCONCLUSIVE, "the edit is not in the sft_peak → sft_end grid", test))
            continue
        rec = recoveries[check_id]
        arm = _edit_arms(row, evidence, True)[0]
        lines = [
            gap_line,
            f"{row['edit']}: {verdicts.arm_text(arm)}; {rec.text()} ({rec.method}), Holm p above/below "
            f"{threshold:g}%: {p_for[check_id]:.3g} / {p_against[check_id]:.3g}",
        ]
        numbers = {
            "edit": row["edit"],
            "gap": gap.to_dict(),
            "recovery": asdict(rec),
            "holm_p_above": p_for[check_id],
            "holm_p_below": p_against[check_id],
        }
        if gap.p_greater >= ALPHA:
            gap_effect = f"gap {gap.effect_text()}"
            checks.append(
                Check(
                    check_id,
                    claim,
                    INCONCLUSIVE,
                    no_gap,
                    test,
                    lines,
                    numbers,
                    gap_detectable,
                    gap_effect,
                    gap.p_greater,
                )
            )
            continue
        verdict = verdicts.p_verdict(p_for[check_id], p_against[check_id])
        reason = {
            SUPPORTED: f"the recovery lies above {threshold:g}%",
            NOT_SUPPORTED: f"the recovery lies below {threshold:g}%",
            INCONCLUSIVE: f"the recovery is not significantly above or below {threshold:g}%",
        }[verdict]
        detectable = f"a recovery {verdicts.recovery_text(rec.detectable, threshold)}"
        p = verdicts.decisive_p(verdict, p_for[check_id], p_against[check_id])
        checks.append(Check(check_id, claim, verdict, reason, test, lines, numbers, detectable, rec.text(), p))

    claim = "putting back directions (top 20%) recovers more than putting back singular values"
    direction, value = edits[0][2], _value_edit(rows)
    compare_test = (
        "the direction edit against the value edit on all OOD episodes, one-sided "
        + ("exact McNemar test" if evidence.paired else "score test")
        + "; recovery difference on the report half"
    )
    if direction is None or value is None:
        checks.append(
            Check(
                "F3.direction_vs_value",
                claim,
                INCONCLUSIVE,
                "the grid lacks a direction top-20% or a value edit",
                compare_test,
            )
        )
    else:
        first, second = _edit_arms(direction, evidence, False)[0], _edit_arms(value, evidence, False)[0]
        comparison = evidence.compare(second, first)
        first_half, second_half = _edit_arms(direction, evidence, True)[0], _edit_arms(value, evidence, True)[0]
        r_first = evidence.recovery(first_half, target, source, 0.0)
        r_second = evidence.recovery(second_half, target, source, 0.0)
        lines = [
            gap_line,
            f"{direction['edit']}: {verdicts.arm_text(first)}; {value['edit']}: {verdicts.arm_text(second)}; "
            f"{comparison.text()}, one-sided p = {comparison.p_greater:.3g}",
            f"report half: {direction['edit']} {r_first.text()}, {value['edit']} {r_second.text()}",
        ]
        numbers = {
            "direction": direction["edit"],
            "value": value["edit"],
            "comparison": comparison.to_dict(),
            "recovery_direction": asdict(r_first),
            "recovery_value": asdict(r_second),
        }
        if gap.p_greater >= ALPHA:
            verdict, reason, detectable = INCONCLUSIVE, no_gap, gap_detectable
            effect, p = f"gap {gap.effect_text()}", gap.p_greater
        else:
            verdict = verdicts.p_verdict(comparison.p_greater, comparison.p_less)
            reason = {
                SUPPORTED: "the direction swap succeeds more often than the value swap",
                NOT_SUPPORTED: "the value swap succeeds more often than the direction swap",
                INCONCLUSIVE: "no significant difference between the two edits",
            }[verdict]
            detectable = f"a difference of {verdicts.points_text(comparison.detectable)} between the two edits"
            effect = comparison.effect_text()
            p = verdicts.decisive_p(verdict, comparison.p_greater, comparison.p_less)
        checks.append(
            Check("F3.direction_vs_value", claim, verdict, reason, compare_test, lines, numbers, detectable, effect, p)
        )
    return Finding("F3", STATEMENT, combine(c.verdict for c in checks), checks)
