"""Where the authors' runs differ from their text or from what is right: every such difference is a config
option, named here once with the authors' value, the corrected one and the file that shows what the authors
did. The paper configs (experiments/) set the authors' values, config.yaml the corrected ones.

`summary(config)` is what every workflow invocation prints before its jobs; `documented_table(configs)` is the
table in docs/fidelity.md (a test holds the two together). "(inferred)" marks a behaviour read from the source
of the authors' pinned libraries (accelerate 1.3.0, DeepSpeed 0.16.6, transformers 4.46.3), not seen in a log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PAPER_MODELS = ("qwen2.5-7b", "llama3.2-11b-vision")


def _get(config: Mapping[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


@dataclass(frozen=True)
class Difference:
    """One option: `key` in the config, what the authors ran (`authors`, a config value) and the corrected
    value; `models` the paper models it concerns (the Qwen prompt format concerns Qwen only)."""

    key: str
    authors: Any
    corrected: str  # the corrected behaviour, as docs/fidelity.md shows it
    did: str  # what the authors' runs did
    evidence: str  # the authors' file that shows it
    inferred: bool = False
    models: tuple[str, ...] = PAPER_MODELS
    read: Callable[[Mapping[str, Any]], Any] | None = field(default=None, compare=False)  # the config's value

    def value(self, config: Mapping[str, Any]) -> Any:
        return self.read(config) if self.read else _get(config, self.key)

    def shown(self, config: Mapping[str, Any]) -> str:
        """The config's setting as the summary prints it."""
        if self.key == "restore.pairs":
            return "SVD edits by counts (top_k)" if self.value(config) else "SVD edits by fractions"
        return _shown(_get(config, self.key))

    def status(self, config: Mapping[str, Any]) -> str:
        """authors where the config runs the authors' behaviour, else corrected."""
        return "authors" if self.value(config) == self.authors else "corrected"


def _absolute_counts(config: Mapping[str, Any]) -> bool:
    """Whether the restoration grid cuts its SVD edits by absolute counts (top_k), as the authors' scripts."""
    return any("top_k" in edit or "tail_k" in edit for pair in config["restore"]["pairs"] for edit in pair["edits"])


def _sft_file(config: Mapping[str, Any]) -> bool:
    return config["data"]["sft"]["file"] is not None


DIFFERENCES = (
    Difference(
        "sft.lr_scheduler_type",
        "warmup_log",
        "`cosine`, as the command line names",
        "DeepSpeed's WarmupLR: lr · ln t / ln 376, then constant (the command line names cosine)",
        "analysis/sft_6579897_4294967294.out",
    ),
    Difference(
        "sft.prompt_format",
        "llama3_headers_as_text",
        "`chat_template`: the model's own, as at evaluation",
        "Qwen trained on Llama 3's header strings as plain text (literal \\n, no system turn, the answer "
        "ending in the text <|eot_id|>\\n), evaluated with Qwen's own template",
        "sft/src/training/data_qwen.py",
        models=("qwen2.5-7b",),
    ),
    Difference(
        "data.sft.file",
        True,
        "`null`: the generated set",
        "Chu et al.'s GeneralPoints set gp-l (about 800,000 examples)",
        "sft/sft_scripts/gp_l-qwen.sh; the loader sft/src/training/data.py",
        read=_sft_file,
    ),
    Difference(
        "data.sft.answer_layout",
        "authors",
        "`json`: one line of strict JSON",
        "answers in the response template: multi-line, Python lists, a trailing comma",
        "prompt_lib/prompts.py (ResponseEqn)",
    ),
    Difference(
        "task.feedback",
        "reference",
        "`sftrl`: one sentence naming the finding",
        'the reference verifier\'s messages after a failed attempt ("your formula does not match any solution.", ".")',
        "utils_rl.py (step_rewards)",
    ),
    Difference(
        "eval.decoding",
        "generation_config",
        "`settings`: the same knobs for every model (greedy by default)",
        "sampled with each checkpoint's generation config (no knob passed to generate)",
        "evaluation/evaluator/*_evaluator.py, evaluation/configs/*.yaml",
    ),
    Difference(
        "restore.peak_rule",
        "all_episodes",
        "`selection_half`: chosen on half, measured on the other",
        "the OOD peak is the highest point of the OOD curve over all 234 episodes",
        "figures/llama_ood_recovery_line-full.pdf (the paper's peak, step 140)",
    ),
    Difference(
        "rl.analysed_update",
        True,
        "`null`: the final policy",
        "an update before the last (30): the RL model analysed is PPO's checkpoint-epoch-29",
        'analysis/*.py, scripts/gp_evaluation/*.sh (e.g. Qwen "800-29")',
        read=lambda config: config["rl"]["analysed_update"] is not None,
    ),
    Difference(
        "rl.seeds",
        [0],
        "three seeds a start (`[0, 1, 2]`): the RL checks test RL, not one run",
        "one RL run (seed 0) from each start checkpoint: the RL checks are inconclusive by construction",
        "scripts/gp_training/language_train*.sh (--seed=0)",
    ),
    Difference(
        "rl.ppo.max_grad_norm",
        None,
        "a number: the clip applied",
        "no gradient clip: accelerator.clip_grad_norm_ does nothing under DeepSpeed",
        "rl/trainer/algo/ppo.py; accelerate 1.3.0",
        inferred=True,
    ),
    Difference(
        "rl.ppo.accumulation",
        "across_epochs",
        "`per_epoch`",
        "gradient accumulation counted across the 4 PPO epochs (Qwen: 1 optimizer step an update)",
        "rl/trainer/algo/ppo.py; DeepSpeed 0.16.6's engine",
        inferred=True,
    ),
    Difference(
        "rl.ppo.episode_end",
        "truncated_sixth_reply",
        "`terminal`: the last attempt ends the episode",
        "a 6th reply after the 5th failure, paid -1 and truncated; GAE across the truncation",
        "gym/gym_cards/envs/general_points_oneline.py; rl/configs/*.yaml (use_proper_time_limits)",
    ),
    Difference(
        "rl.ppo.lr_scheduler_type",
        "cosine_annealing",
        "`cosine` to 0 over the updates",
        "torch's CosineAnnealingLR (eta_min 1e-9), periodic past T_max",
        "rl/trainer/*_trainer.py",
    ),
    Difference(
        "rl.ppo.scheduler_steps_per_update",
        4,
        "`1`",
        "the schedule stepped once per process (4 an update): lr near 0 after a quarter of the updates",
        "rl/trainer/base_trainer.py; accelerate 1.3.0",
        inferred=True,
    ),
    Difference(
        "rl.ppo.decoding",
        "generation_config",
        "`settings`: temperature and top-p of rl.ppo",
        "rollouts sampled with the checkpoint's generation config at T 0.2 (Qwen: top-p 0.8, top-k 20, penalty 1.05)",
        "rl/trainer/model_tz_llama.py (act_oneline)",
    ),
    Difference(
        "restore.pairs",
        True,
        "fractions of each matrix's rank (top, tail)",
        "SVD edits by absolute counts (top_k): k_top 2560, 3072, 3584 (4096), the same for every matrix",
        "analysis/params.txt, params-dir.txt",
        read=_absolute_counts,
    ),
    Difference(
        "restore.covering",
        "copy",
        "`edit`: the kind's edit on every index",
        "a k at or above a matrix's rank copies it whole, singular values included",
        "analysis/svd_recover*.py",
    ),
    Difference(
        "restore.round_trip",
        "float16",
        "`none`: one rounding to the target's dtype",
        "both models loaded, and the edit saved, in float16",
        "analysis/svd_recover*.py",
    ),
)


def _shown(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def statuses(config: Mapping[str, Any], model: str | None = None) -> list[tuple[Difference, str]]:
    """Each difference that concerns `model` (the experiment's paper model; None: all) with its status."""
    return [(d, d.status(config)) for d in DIFFERENCES if model is None or model in d.models]


def summary(config: Mapping[str, Any]) -> str:
    """What every invocation prints: how many options are the authors', and, where any is or the config
    names the paper's table, each option's value and status."""
    model = config.get("report", {}).get("paper_table")
    rows = statuses(config, model)
    authors = [d for d, status in rows if status == "authors"]
    head = (
        f"Fidelity to the authors' runs (docs/fidelity.md): {len(authors)} of {len(rows)} options as the "
        "authors ran them"
    )
    if not authors and model is None:
        return head + " (all corrected)"
    lines = [head + ":"]
    for difference, status in rows:
        mark = " (inferred)" if difference.inferred else ""
        setting = (
            difference.shown(config)
            if difference.key == "restore.pairs"
            else f"{difference.key} = {difference.shown(config)}"
        )
        lines.append(f"  {status:<9}  {setting}{mark}")
    return "\n".join(lines)


def documented_table(paper_configs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The table in docs/fidelity.md: per option, what the authors did and where it shows, the corrected
    behaviour, the key, and what each paper config uses (`paper_configs`: paper model -> its merged config)."""
    lines = [
        "| option (config key) | the authors' runs | shown in | corrected (config.yaml) | "
        + " | ".join(paper_configs)
        + " |",
        "|---|---|---|---|" + "---|" * len(paper_configs),
    ]
    for d in DIFFERENCES:
        uses = [(d.status(config) if model in d.models else "–") for model, config in paper_configs.items()]
        did = d.did.replace("|", "\\|") + (" (inferred)" if d.inferred else "")
        authors = "set" if d.read else f"`{_shown(d.authors)}`"
        lines.append(f"| `{d.key}` | {authors}: {did} | {d.evidence} | {d.corrected} | " + " | ".join(uses) + " |")
    return lines
