"""The verdicts written out: claims.md for a reader, claims.json for a program, and the table of what the
findings rest on (`setting_lines`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sftrl import io
from sftrl.claims.inputs import ClaimInputs
from sftrl.claims.verdicts import VERDICTS, ClaimSettings, Finding, num
from sftrl.curves import Rate


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def to_json(
    findings: Sequence[Finding],
    settings: ClaimSettings,
    provenance: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """claims.json: the findings, their verdicts, the settings, the provenance, and `extra` sections (the
    reproduction of the paper's table)."""
    return _clean(
        {
            "findings": [asdict(f) for f in findings],
            "verdicts": {f.id: f.verdict for f in findings},
            "settings": asdict(settings),
            **dict(extra or {}),
            "provenance": dict(provenance or {}),
        }
    )


def _share(value: Any) -> str:
    number = num(value)
    return "–" if number is None else f"{number:.2f}"


PEAK_RULE_LABELS = {
    "selection_half": "best on the selection half, this workflow's rule",
    "all_episodes": "best on all episodes, the authors' argmax",
}


def peak_lines(roles: Mapping[str, Any] | None) -> list[str]:
    """The OOD peak by each rule (roles.json), side by side, with the one that plays sft_peak marked."""
    if not roles or "peaks" not in roles:
        return []
    ood = {row["model"]: row for row in roles.get("ood", [])}
    lines = [
        "## The OOD peak",
        "",
        "| rule | checkpoint | OOD success, all episodes | selection half | report half |",
        "|---|---|---|---|---|",
    ]
    playing = roles.get("peak_rule", "selection_half")
    for rule, peak in sorted(roles["peaks"].items(), key=lambda item: item[0] != playing):
        row = ood.get(peak["model"], {})
        cells = [
            100 * float(row[k]) if row.get(k) is not None else None
            for k in ("all_rate", "selection_rate", "report_rate")
        ]
        shown = ["–" if c is None else f"{c:.1f}%" for c in cells]
        plays = " (plays sft_peak)" if rule == playing else ""
        lines.append(f"| {PEAK_RULE_LABELS.get(rule, rule)}{plays} | {peak['model']} | {' | '.join(shown)} |")
    if roles.get("peak_rule") == "all_episodes":
        lines += [
            "",
            "sft_peak was chosen on all OOD episodes, so its report-half rate and every gap from it are "
            "biased upwards by the choice.",
        ]
    return [*lines, ""]


def _percent(value: Any) -> str:
    rate = num(value)
    return "–" if rate is None else f"{100 * rate:.1f}%"


def setting_lines(inputs: ClaimInputs) -> list[str]:
    """What the findings rest on: whether the base plays the multi-turn game (successes after a failed
    attempt), reads the stated rule (first-attempt rule following), has OOD skill to lose, and has it outside
    the task's layout (first attempt right in any layout); the OOD peak
    by each rule; and the rule following of each RL model's first OOD answers against its start's."""
    base = [row for row in inputs.curve if int(row["step"]) == 0]
    if not base:
        return peak_lines(inputs.roles)
    lines = [
        "## The base model",
        "",
        "| split | success | first-attempt success | first attempt right in any layout | successes after a failed attempt | first-attempt rule following |",
        "|---|---|---|---|---|---|",
    ]
    for row in base:
        n = int(row["n"])
        solved = Rate.of(row["success"], n)
        after = num(row.get("success_after_failure"))
        later = "–" if after is None else f"{round(after * solved.k)} of {solved.k} ({100 * after:.0f}%)"
        lines.append(
            f"| {row['split']} | {solved.text()} | {100 * float(row['first_attempt_success']):.1f}% | "
            f"{_percent(row.get('first_attempt_any_layout'))} | {later} | {_share(row.get('rule_following_first'))} |"
        )
    rl = [row for row in inputs.rl if row["split"] == "ood" and row.get("rule_following_first_after") not in (None, "")]
    if rl:
        lines += [
            "",
            "Rule following of the first OOD answers (stated card values that follow the prompt's rule), before → after RL:",
            "",
            "| start step | algorithm | seed | before | after |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['start_step']} | {row['algorithm']} | {row['seed']} | "
            f"{_share(row['rule_following_first_before'])} | {_share(row['rule_following_first_after'])} |"
            for row in rl
        ]
    return [*lines, "", *peak_lines(inputs.roles)]


def to_markdown(findings: Sequence[Finding], title: str = "Claims", setting: Sequence[str] = ()) -> str:
    lines = [
        f"# {title}",
        "",
        "Each finding of the study is judged by its checks: *supported* only where its test at α = 0.05 (Holm-corrected "
        "within a family of starts or edits) carries it, *not supported* where the test carries the opposite, "
        "*inconclusive* otherwise. *Detectable* is the smallest effect the check would find with power 0.8 at this "
        "experiment's sizes: an inconclusive check whose detectable effect is large had too few episodes to tell.",
        "",
        "| finding | verdict | checks (supported / not supported / inconclusive) |",
        "|---|---|---|",
    ]
    for finding in findings:
        counts = [sum(c.verdict == v for c in finding.checks) for v in VERDICTS]
        lines.append(f"| {finding.id} | **{finding.verdict}** | {' / '.join(map(str, counts))} |")
    lines += ["", *check_table(findings), "", *setting]
    for finding in findings:
        lines += ["", f"## {finding.id}: {finding.verdict}", "", f"> {finding.statement}", ""]
        shown: dict[str, str] = {}  # an evidence line → the check it was first listed under
        for check in finding.checks:
            lines += [f"### {check.id}: {check.verdict}", "", f"*Claim:* {check.claim}.  ", f"*Why:* {check.reason}.  "]
            lines += [f"*Test:* {check.test}.  "]
            lines += [f"*Detectable:* {check.detectable or 'not applicable'}.", ""]
            earlier = list(dict.fromkeys(shown[item] for item in check.evidence if item in shown))
            if earlier:
                lines.append(f"- the lines listed under {', '.join(earlier)} (not repeated)")
            lines += [f"- {item}" for item in check.evidence if item not in shown]
            shown.update((item, check.id) for item in check.evidence if item not in shown)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def check_table(findings: Sequence[Finding]) -> list[str]:
    """Every check in one table: its verdict, the effect and p it rests on, and the effect it could detect."""
    lines = [
        "| check | verdict | effect [95% interval] | p | detectable |",
        "|---|---|---|---|---|",
    ]
    for finding in findings:
        for check in finding.checks:
            p = "–" if check.p is None or math.isnan(check.p) else f"{check.p:.3g}"
            lines.append(
                f"| {check.id} | {check.verdict} | {check.effect or '–'} | {p} | {check.detectable or 'not applicable'} |"
            )
    return [
        "Every check: the effect and the one-sided p its verdict rests on (Holm-adjusted within a family of starts "
        "or edits; for a family, its deciding start or edit), and the smallest effect it could detect.",
        "",
        *lines,
    ]


def write_claims(
    findings: Sequence[Finding],
    markdown_path: str | Path,
    json_path: str | Path,
    settings: ClaimSettings,
    provenance: Mapping[str, Any] | None = None,
    title: str = "Claims",
    setting: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> None:
    io.write_text(markdown_path, to_markdown(findings, title, setting))
    io.write_json(json_path, to_json(findings, settings, provenance, extra))
