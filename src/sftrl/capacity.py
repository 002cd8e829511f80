"""GPU memory per job and disk for the outputs, planned from the model's config.json before any job is queued.

A paper-scale experiment fails late and expensively when a job does not fit: PPO on a 7B model holds about
16 bytes a parameter before its activations, and the ladder, RL models and their resumable checkpoints take
terabytes. The dry run prints this plan and stops where a job cannot fit its GPU (`resources.<stage>
.gpu_mem_gb`) or the outputs their disk (`plan.disk_budget_gb`). Estimates, from these terms:

- weights in the model's dtype, plus float32 masters where the trainer keeps them (a half-precision model
  trained without DeepSpeed: the masters are the trained weights);
- gradients and Adam's two moments of the trained parameters: float32 (4 + 8 bytes) without DeepSpeed;
  under DeepSpeed 16-bit gradients and float32 masters and moments (2 + 12 bytes), partitioned over the
  processes by ZeRO (states from stage 1, gradients from stage 2, weights at stage 3), the states in CPU
  memory with optimizer offload;
- activations saved for the backward pass, without recomputation: per token and decoder layer about
  8 x hidden + 2 x kv width + 4 x intermediate values (norm inputs, q/k/v, attention output, the gated MLP's
  four tensors; attention itself in a fused kernel), and the logits in float32 with their log-softmax and
  gradient (12 bytes per vocabulary entry);
- the KV cache of generation: 2 x layers x kv width values per token, and its prefill: one layer's
  activations over the whole prompt batch;
- CONTEXT_GIB of CUDA context and allocator reserve.
Torch-free: the workflow imports it to check a config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sftrl.families import family_of, text_config, tied_embeddings

GIB = 1024**3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CONTEXT_GIB = 1.5
# Characters per token of the paper's prompt and feedback text with a BPE vocabulary (conservative: the
# JSON and arithmetic of the prompt tokenize densely).
CHARS_PER_TOKEN = 3


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a model: parameter counts and the decoder's widths."""

    params: int  # every parameter
    trained: int  # those a trainer updates (a vision tower stays frozen)
    layers: int
    hidden: int
    intermediate: int
    kv_width: int  # key (= value) width of one layer: kv heads x head dim
    vocab: int

    @classmethod
    def from_config(cls, config: Mapping) -> ModelShape:
        """From a Hugging Face config.json of a family in sftrl.families (a vision-language model's text
        config, its vision tower counted as frozen); a ValueError names a missing field or an unknown family.
        A fused projection holds as many parameters as its parts."""
        text = text_config(config)
        need = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "vocab_size")
        missing = [key for key in need if not isinstance(text.get(key), int)]
        if missing:
            raise ValueError(f"the model's config.json lacks {missing}: no memory plan can be made")
        h, layers, inter = text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"]
        heads, vocab = text["num_attention_heads"], text["vocab_size"]
        head_dim = text.get("head_dim") or h // heads
        kv = (text.get("num_key_value_heads") or heads) * head_dim
        # biases: a family's on q, k and v (Qwen2), else attention_bias on q, k, v and o (Llama's)
        family = family_of(config)
        qkv_bias = family.qkv_bias or bool(text.get("attention_bias"))
        o_bias = not family.qkv_bias and bool(text.get("attention_bias"))
        attention = 2 * h * heads * head_dim + 2 * h * kv + (heads * head_dim + 2 * kv) * qkv_bias + h * o_bias
        layer = attention + 3 * h * inter + 2 * h
        decoder = layers * layer + vocab * h * (1 if tied_embeddings(config) else 2) + h
        vision = vision_params(config.get("vision_config"), h)
        return cls(decoder + vision, decoder, layers, h, inter, kv, vocab)


def vision_params(vision: Mapping | None, text_hidden: int) -> int:
    """A vision tower's parameters (ViT blocks: attention and a two-layer MLP) and its projector."""
    if not vision:
        return 0
    hv, inter = vision.get("hidden_size", 0), vision.get("intermediate_size", 0)
    blocks = vision.get("num_hidden_layers", 0) + vision.get("num_global_layers", 0)
    projector = vision.get("vision_output_dim", hv) * text_hidden
    return blocks * (4 * hv * hv + 2 * hv * inter) + projector


@dataclass(frozen=True)
class Training:
    """How a stage trains: processes, DeepSpeed ZeRO stage (None: no DeepSpeed), optimizer offload."""

    processes: int = 1
    zero: int | None = None
    offload: bool = False


def training_gib(
    shape: ModelShape, dtype: str, how: Training, batch: int, tokens: int, checkpointing: bool = False
) -> dict[str, float]:
    """Per-GPU memory of a training step, by term (GiB): `batch` sequences of `tokens` tokens; with
    gradient checkpointing only each layer's input is kept, and one layer's activations recomputed."""
    w = BYTES[dtype]
    weights: float
    grads: float
    states: float
    if how.zero is None:  # float32 weights: the masters of a half-precision model (sftrl.trainer_args)
        weights, grads, states = shape.params * 4, shape.trained * 4, shape.trained * 8
    else:
        share = how.processes
        weights = shape.params * w / (share if how.zero >= 3 else 1)
        grads = shape.trained * w / (share if how.zero >= 2 else 1)
        states = 0 if how.offload else shape.trained * 12 / (share if how.zero >= 1 else 1)
    per_layer = activation_values(shape) // shape.layers
    kept = shape.layers * shape.hidden + per_layer if checkpointing else shape.layers * per_layer
    activations = batch * tokens * (kept * w + shape.vocab * 12)
    return {
        "weights": weights / GIB,
        "gradients": grads / GIB,
        "optimizer": states / GIB,
        "activations": activations / GIB,
        "context": CONTEXT_GIB,
    }


def ppo_gib(
    shape: ModelShape, dtype: str, how: Training, minibatch: int, generation_batch: int, tokens: int
) -> dict[str, float]:
    """Per-GPU memory of PPO: the training state, and the larger of an update's activations and a rollout's
    KV cache and logits (the rollout runs between updates)."""
    train = training_gib(shape, dtype, how, minibatch, tokens)
    rollout = generation_gib(shape, dtype, generation_batch, tokens)
    train["activations"] = max(train["activations"], rollout["kv_cache"] + rollout["activations"])
    return train


def activation_values(shape: ModelShape) -> int:
    """Values saved for the backward pass per token, over all decoder layers."""
    return shape.layers * (8 * shape.hidden + 2 * shape.kv_width + 4 * shape.intermediate)


def generation_gib(shape: ModelShape, dtype: str, batch: int, tokens: int) -> dict[str, float]:
    """Per-GPU memory of batched generation (GiB): the weights, a KV cache of `batch` x `tokens`, one
    step's float32 logits, and the prefill: one layer's activations over every prompt token at once."""
    w = BYTES[dtype]
    per_layer = activation_values(shape) // shape.layers
    return {
        "weights": shape.params * w / GIB,
        "kv_cache": batch * tokens * 2 * shape.layers * shape.kv_width * w / GIB,
        "activations": (batch * shape.vocab * 4 + batch * tokens * per_layer * w) / GIB,
        "context": CONTEXT_GIB,
    }


def conversation_tokens(prompt_chars: int, feedback_chars: int, attempts: int, reply_tokens: int) -> int:
    """Tokens of an episode played to its last attempt: the prompt, each reply, the feedback between."""
    prompt = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    feedback = math.ceil(feedback_chars / CHARS_PER_TOKEN)
    return prompt + attempts * reply_tokens + (attempts - 1) * feedback


# --- the experiment's plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StageMemory:
    stage: str  # a key of resources
    job: str  # what the estimate is of
    gpus: int
    terms: dict[str, float]
    budget: float | None  # resources.<stage>.gpu_mem_gb
    remedy: str | None = None  # the setting to change when it does not fit (default: the stage's REMEDY)
    kind: str = ""  # which jobs it is of: sft, ppo, grpo, evaluate, representations (sftrl.memory.job_kind)

    @property
    def total(self) -> float:
        return sum(self.terms.values())

    @property
    def fits(self) -> bool | None:
        return None if self.budget is None or not self.gpus else self.total <= self.budget


def deepspeed_training(path: str | None, processes: int, read_json) -> Training:
    """The Training of a stage from its DeepSpeed JSON (`read_json(path)`), or plain data parallelism."""
    if not path:
        return Training(processes)
    zero = read_json(path).get("zero_optimization") or {}
    offload = (zero.get("offload_optimizer") or {}).get("device", "none") not in ("none", None)
    return Training(processes, int(zero.get("stage", 0)), offload)


# The hand the plan renders its prompt, answer and feedback for: OOD (face cards 11, 12, 13), solvable.
PLAN_HAND, PLAN_RULE = (5, 6, 11, 12), "ood"


def text_tokens(config: Mapping, reply_tokens: int, attempts: int | None = None) -> int:
    """Tokens of an episode played to its last attempt (or to `attempts`), from the verifier's own prompt
    and feedback text for the task's style; replies of `reply_tokens`."""
    from sftrl import cards

    task = config["task"]
    attempts = attempts or task["max_attempts"]
    episode = cards.Episode(
        list(PLAN_HAND),
        cards.get_rule(PLAN_RULE),
        target=task["target"],
        style=task["style"],
        max_attempts=attempts,
        feedback_text=task.get("feedback", "sftrl"),
        strict_layout=task.get("strict_layout", False) and task["style"] in cards.STRICT_LAYOUTS,
    )
    prompt = sum(len(m["content"]) for m in episode.messages)
    episode.step("1 + 1 = 2")  # a wrong attempt: the feedback's length
    feedback = len(episode.messages[-1]["content"]) if attempts > 1 else 0
    return conversation_tokens(prompt, feedback, attempts, reply_tokens)


def sft_tokens(config: Mapping) -> int:
    """Tokens of an SFT example (prompt and reference answer), at most sft.max_length: batches are padded
    to their longest example, not to max_length."""
    from sftrl import cards

    task = config["task"]
    formula = cards.solutions(PLAN_HAND, PLAN_RULE, task["target"])[0]
    answer = cards.answer(PLAN_HAND, PLAN_RULE, formula, task["target"], task["style"])
    return min(config["sft"]["max_length"], text_tokens(config, math.ceil(len(answer) / CHARS_PER_TOKEN), 1))


def memory_plan(config: Mapping, shape: ModelShape, read_json, algorithms) -> list[StageMemory]:
    """Per-GPU memory of one job of each training and evaluation stage the config runs."""
    resources, dtype = config["resources"], config["model"]["dtype"]

    def processes(stage: str) -> int:
        return resources[stage]["gpus"] or resources[stage].get("processes", 1)

    def budget(stage: str) -> float | None:
        return resources[stage].get("gpu_mem_gb")

    sft = config["sft"]
    how = deepspeed_training(sft["deepspeed"], processes("sft"), read_json)
    tokens, batch = sft_tokens(config), sft["per_device_batch_size"]
    train = training_gib(shape, dtype, how, batch, tokens, sft.get("gradient_checkpointing", False))
    rows = [
        StageMemory(
            "sft",
            f"SFT step: {batch} x {tokens} tokens per process",
            resources["sft"]["gpus"],
            train,
            budget("sft"),
            kind="sft",
        )
    ]
    if "ppo" in algorithms:
        ppo = config["rl"]["ppo"]
        sixth = ppo.get("episode_end") == "truncated_sixth_reply"  # one more reply after the last attempt
        tokens = text_tokens(config, ppo["max_new_tokens"], config["task"]["max_attempts"] + sixth)
        how = deepspeed_training(ppo["deepspeed"], processes("rl"), read_json)
        train = ppo_gib(shape, dtype, how, ppo["minibatch_size"], ppo["generation_batch_size"], tokens)
        rows.append(
            StageMemory(
                "rl",
                f"PPO update: {ppo['minibatch_size']} x {tokens} tokens per process",
                resources["rl"]["gpus"],
                train,
                budget("rl"),
                kind="ppo",
            )
        )
    if "grpo" in algorithms:
        grpo = config["rl"]["grpo"]
        tokens = text_tokens(config, grpo["max_completion_length"], attempts=1)  # single-turn
        how = Training(processes("rl"))
        train = training_gib(shape, dtype, how, grpo["per_device_train_batch_size"], tokens)
        rows.append(
            StageMemory(
                "rl",
                f"GRPO step: {grpo['per_device_train_batch_size']} x {tokens} tokens per process",
                resources["rl"]["gpus"],
                train,
                budget("rl"),
                kind="grpo",
            )
        )
    evaluation = config["eval"]
    tokens = text_tokens(config, evaluation["max_new_tokens"])
    rows.append(
        StageMemory(
            "evaluate",
            f"evaluation: {evaluation['batch_size']} episodes x {tokens} tokens",
            resources["evaluate"]["gpus"],
            generation_gib(shape, dtype, evaluation["batch_size"], tokens),
            budget("evaluate"),
            kind="evaluate",
        )
    )
    section = config.get("representations") or {}
    if section.get("models") or section.get("pairs"):
        rows.append(representation_memory(config, shape, budget("evaluate")))
    return rows


def representation_memory(config: Mapping, shape: ModelShape, budget: float | None) -> StageMemory:
    """A representation job: both models' weights, one forward pass over a batch of first prompts (no KV
    cache), and float32 logits at the pooled positions only."""
    section, dtype = config["representations"], config["model"]["dtype"]
    batch, positions, w = section["batch_size"], section["positions"], BYTES[dtype]
    tokens = text_tokens(config, 0, attempts=1)
    per_layer = activation_values(shape) // shape.layers
    terms = {
        "weights": 2 * shape.params * w / GIB,
        "activations": (batch * tokens * per_layer * w + 3 * batch * positions * shape.vocab * 4) / GIB,
        "context": CONTEXT_GIB,
    }
    job = f"representations: two models, {batch} prompts x {tokens} tokens"
    return StageMemory(
        "evaluate",
        job,
        config["resources"]["evaluate"]["gpus"],
        terms,
        budget,
        "Lower representations.batch_size",
        kind="representations",
    )


def check_memory(rows: list[StageMemory]) -> None:
    """A ValueError for every GPU job whose estimate exceeds its GPU, with the setting to change."""
    problems = []
    for row in rows:
        if row.fits is False:
            terms = ", ".join(f"{name} {gib:.1f}" for name, gib in row.terms.items())
            problems.append(
                f"{row.job}: about {row.total:.0f} GiB per GPU ({terms}), more than resources.{row.stage}.gpu_mem_gb "
                f"= {row.budget:g}. {row.remedy or REMEDY.get(row.stage, REMEDY['default'])}"
            )
    if problems:
        raise ValueError("jobs that cannot fit their GPU:\n- " + "\n- ".join(problems))


REMEDY = {
    "rl": "Spread it: more GPUs (resources.rl.gpus) under DeepSpeed ZeRO-2 with the optimizer in CPU memory "
    "(rl.ppo.deepspeed: configs/deepspeed/zero2_offload.json), or a smaller minibatch_size",
    "sft": "Spread it: sft.gradient_checkpointing: true, more GPUs (resources.sft.gpus) under a ZeRO-3 config with "
    "offload (sft.deepspeed), or a smaller per_device_batch_size",
    "evaluate": "Lower eval.batch_size",
    "default": "Use more GPUs or smaller batches",
}


def disk_plan(config: Mapping, shape: ModelShape, counts: Mapping[str, int]) -> dict[str, float]:
    """GiB the experiment's outputs take at most, by kind: `counts` holds the ladder, RL runs (each with its
    `exports_per_run` policies exported along the run, stored once: hard links) and edited models,
    the models whose SVDs the spectral analysis caches, and the RL runs that may be in flight at once
    (`in_flight`, Snakemake's job limit). Resumable checkpoints stay in the work directory after their run:
    `save_total_limit` of them per run, each with its weights and optimizer states; with keep_models:
    ladder they go once the run's model is written, and an RL model once it is evaluated and analysed, so
    only the runs in flight hold either."""
    w = BYTES[config["model"]["dtype"]]
    model = shape.params * w
    sft, ppo = config["sft"], config["rl"]["ppo"]
    rl_held = min(counts["rl"], counts["in_flight"]) if config["keep_models"] == "ladder" else counts["rl"]

    def checkpoint(deepspeed: str | None) -> float:  # masters (or 16-bit weights) and optimizer states
        return shape.params * (w + 12) if deepspeed else shape.params * 4 + shape.trained * 8

    plan = {
        "ladder": counts["ladder"] * model,
        "rl_models": rl_held * model * (1 + counts.get("exports_per_run", 0)),  # final and exported policies
        "edited_models": counts["edits"] * model,
        "sft_checkpoints": sft.get("save_total_limit", 2) * checkpoint(sft["deepspeed"]),
        "rl_checkpoints": rl_held * ppo.get("save_total_limit", 2) * checkpoint(ppo["deepspeed"]),
        # U, S and V^T of every matrix in float32: about 3x the model's 16-bit size
        "svd_cache": counts["analysed"] * shape.params * 6 if config["spectrum"]["svd_cache"] else 0,
    }
    return {kind: size / GIB for kind, size in plan.items()}


def check_disk(plan: Mapping[str, float], budget: float | None) -> None:
    total = sum(plan.values())
    if budget is not None and total > budget:
        parts = ", ".join(f"{kind} {gib:,.0f}" for kind, gib in plan.items() if gib)
        raise ValueError(
            f"the experiment's outputs take about {total:,.0f} GiB ({parts}), more than plan.disk_budget_gb = "
            f"{budget:g}: keep only the ladder (keep_models: ladder, with --jobs or --resources gpu=N bounding "
            "the RL runs at once), start RL from fewer checkpoints "
            "(rl.from_steps), keep fewer checkpoints (save_total_limit), switch off spectrum.svd_cache, or "
            "raise the budget"
        )


def records(rows: list[StageMemory]) -> list[dict]:
    """The memory plan as `sftrl.memory.plan_vs_measured` reads it."""
    return [{"kind": r.kind, "job": r.job, "gpus": r.gpus, "estimate_gib": r.total} for r in rows]


def render(rows: list[StageMemory], disk: Mapping[str, float]) -> str:
    """The plan as the dry run prints it."""
    lines = [
        "Memory plan (GiB per GPU, estimated from the model's config.json):",
        f"  {'stage':<9} {'gpus':>4} {'estimate':>9} {'budget':>7}  job",
    ]
    for row in rows:
        budget = "-" if row.budget is None else f"{row.budget:g}"
        verdict = {True: "", False: "  DOES NOT FIT", None: ""}[row.fits]
        lines.append(f"  {row.stage:<9} {row.gpus:>4} {row.total:>9.1f} {budget:>7}  {row.job}{verdict}")
    lines.append(
        f"Disk plan (GiB): {sum(disk.values()):,.1f} in all = "
        + ", ".join(f"{kind} {gib:,.1f}" for kind, gib in disk.items())
    )
    return "\n".join(lines)
