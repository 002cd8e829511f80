"""A verdict on each finding of the study, from the workflow's result tables and per-episode outcomes.

Every finding is tested by one or more checks. A check is `supported` only when its test at α = 0.05
(Holm-corrected within a family) carries the claim, `not supported` when it carries the opposite, and
`inconclusive` otherwise: when the test finds no difference, when there is nothing measurable to test (no
significant OOD loss to recover, too few RL starts for a rank test to reach significance), or when a stage
that would measure it was not run. A finding is `not supported` when one of its checks is, `supported`
when all are, and `inconclusive` otherwise. Every check states the smallest effect it could have detected
(power 0.8, α = 0.05), so *inconclusive* can be read as "no effect" or as "too few episodes".

Tests (`sftrl.stats`):
- two models on the same OOD episodes (two checkpoints, an edit and its target) are compared episode by
  episode: one-sided exact McNemar tests, paired bootstrap intervals;
- RL from a start is a method run with seeds: its runs against their start (and their recovery %) are
  tested over seeds and episodes (`stats.seed_episode_test`: a crossed seed × episode layout, Cochran–Cox
  critical values), so a second seed that contradicts the first widens the interval; with one seed a start's
  RL checks are inconclusive by construction (the run's own McNemar test is listed, not judged);
- a recovery % = (after − target) / (source − target) · 100 gets a paired bootstrap interval over episodes
  and one-sided bootstrap p-values against its threshold;
- without per-episode outcomes (rates from the tables only, e.g. a paper's stage table) the same checks use
  the score test of two proportions, Newcombe intervals and a parametric bootstrap;
- spectral statistics are medians over weight matrices with 95% bootstrap intervals over matrices and
  one-sided Wilcoxon signed-rank tests;
- rank correlations are Spearman's ρ with an exact permutation p-value (random permutations beyond 8
  points) and, from 4 points on, a Fisher-z interval with the Fieller–Hartley–Pearson variance 1.06/(n − 3).

`sft_peak` is chosen on the selection half of the OOD episodes and measured on the report half
(`sftrl.peak`), so the gaps from it are not inflated by the choice; without per-episode outcomes that is
impossible and the checks say so.

Modules:
- `inputs`: the result tables (`ClaimInputs`, `load_inputs`, `read_csv`), the RL starts with their seeds
  (`rl_starts`) and the OOD split's size; the SFT curve's points and their parser are `sftrl.curves`'
  (`CurvePoint`, `ood_curve`, `Rate`), shared with the RL plan;
- `verdicts`: the verdicts, `Check` and `Finding`, the thresholds (`ClaimSettings`), the rules from tests to
  verdicts (`combine`, `p_verdict`, `family_verdict`, `rank_test`, `rank_verdict`) and `num`;
- `evidence`: each model's OOD evidence for the tests (`Evidence`) and the choice of sft_peak;
- `representations`: F1's check that RL moves the OOD prompts' representations back toward sft_peak;
- `peak_recovery` (F1), `spectrum` (F2), `restoration` (F3), `start_quality` (F4): one finding each, a
  `finding_N` that gathers its checks;
- `findings`: all four findings (`evaluate_claims`);
- `render`: claims.md and claims.json (`write_claims`, `to_markdown`, `to_json`, `setting_lines`).
"""

from sftrl.claims.evidence import Evidence
from sftrl.claims.findings import evaluate_claims
from sftrl.claims.inputs import ClaimInputs, RlStart, load_inputs, ood_episodes, read_csv, rl_starts
from sftrl.claims.render import setting_lines, to_json, to_markdown, write_claims
from sftrl.claims.verdicts import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    VERDICTS,
    Check,
    ClaimSettings,
    Finding,
    combine,
    family_verdict,
    num,
    p_verdict,
    rank_test,
    rank_verdict,
)
from sftrl.curves import CurvePoint, Rate, ood_curve

__all__ = [
    "INCONCLUSIVE",
    "NOT_SUPPORTED",
    "SUPPORTED",
    "VERDICTS",
    "Check",
    "ClaimInputs",
    "ClaimSettings",
    "CurvePoint",
    "Evidence",
    "Finding",
    "Rate",
    "RlStart",
    "combine",
    "evaluate_claims",
    "family_verdict",
    "load_inputs",
    "num",
    "ood_curve",
    "ood_episodes",
    "p_verdict",
    "rank_test",
    "rank_verdict",
    "read_csv",
    "rl_starts",
    "setting_lines",
    "to_json",
    "to_markdown",
    "write_claims",
]
