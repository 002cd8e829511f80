"""The paper's own numbers, for the claims report's "Reproduces the paper?" section (`report.paper_table`).

The stage table of arXiv 2508.16546 (its success per stage; docs/fidelity.md): episode success in % on 234
episodes per split, for the SFT checkpoint with the best OOD score ("peak", the authors' argmax over all OOD
episodes), the later SFT checkpoint RL started from ("end": Llama step 1100, Qwen step 800) and the RL model
from it ("RL": PPO's policy after 30 updates). Every rate is k/234 for an integer k.
"""

from __future__ import annotations

from dataclasses import dataclass

EPISODES = 234  # per split, seed 42, in the authors' evaluation
STAGES = ("peak", "end", "rl")
PAPER_SPLITS = {"id": "id", "ood": "ood"}  # the paper's split -> this workflow's (its ID hands may be seen ones)


@dataclass(frozen=True)
class PaperTable:
    model: str
    rates: dict[str, dict[str, float]]  # split -> stage -> success %
    algorithm: str = "ppo"  # the RL of the paper's RL column
    note: str = ""


PAPER_TABLES = {
    "llama3.2-11b-vision": PaperTable(
        "Llama-3.2-11B-Vision-Instruct (text only)",
        {"id": {"peak": 24.79, "end": 68.38, "rl": 71.79}, "ood": {"peak": 17.52, "end": 8.97, "rl": 16.24}},
        note="the abstract gives OOD RL 15.38%",
    ),
    "qwen2.5-7b": PaperTable(
        "Qwen2.5-7B-Instruct",
        {"id": {"peak": 26.07, "end": 43.59, "rl": 40.60}, "ood": {"peak": 19.67, "end": 17.09, "rl": 19.66}},
    ),
}


def paper_count(rate_pct: float, n: int = EPISODES) -> int:
    """The successes behind a rate the paper printed to two decimals."""
    return round(rate_pct / 100 * n)
