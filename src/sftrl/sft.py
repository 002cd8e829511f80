"""Supervised fine-tuning with a checkpoint ladder, on TRL's SFTTrainer; also pretrains the tiny base.

At every ladder step the trainer evaluates the loss on each evaluation set, writes a resumable
checkpoint (with optimizer state) into the work directory, and the ladder callback exports the model
part of that checkpoint as a self-contained Hugging Face directory. A checkpoint counts as complete only
once a marker, written after everything else, says so; a run killed mid-save resumes from the previous
complete checkpoint. The marker also carries a fingerprint of the run (config, data, initial model), so
a changed run never resumes from, or keeps a ladder directory of, a different one. Every export is also
kept in the work directory (`ladder/step-N`): Snakemake deletes a job's outputs before rerunning it,
and the ladder directories of steps before the resume point are put back from there (hard links).
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import SFTConfig, SFTTrainer

from sftrl import cards, data, exports, io, training_run
from sftrl.checkpoints import (
    COMPLETE_MARKER,
    checkpoints,
    is_complete,
    mark_complete,
    model_dir_identity,
)
from sftrl.checkpoints import discard_unusable as discard_unusable_checkpoints
from sftrl.config import base_seed, check_schedule, from_dict
from sftrl.config import ladder_steps as config_ladder_steps
from sftrl.exports import holds, publish
from sftrl.modeling import (
    TinyModelConfig,
    build_tiny_model,
    build_tokenizer,
    cast_weights,
    check_model_dir,
    load_model,
)
from sftrl.names import sft_model
from sftrl.provenance import provenance as make_provenance
from sftrl.sft_format import PROMPT_FORMATS, headers_as_text, tokenizer_problem
from sftrl.tracking import Tracker
from sftrl.trainer_args import CUSTOM_SCHEDULES, OptimiserConfig, master_dtype, optimiser_args

log = logging.getLogger(__name__)

LADDER_STORE = "ladder"  # work_dir/ladder/step-N: every export, kept for republishing (sftrl.exports)
EVAL_LOSS_RE = re.compile(r"^eval_(.+)_loss$")
TRL_EVAL_METRICS = {"eval_entropy", "eval_mean_token_accuracy", "eval_num_tokens"}
# Files of a trainer checkpoint that belong to the trainer, not to the model directory.
TRAINER_FILES = re.compile(
    r"^(optimizer|scheduler|scaler|rng_state|trainer_state|training_args|README|latest|zero_to_fp32|zero_to_torch)"
    rf"|^{re.escape(COMPLETE_MARKER)}$"
)


@dataclass(frozen=True)
class SftConfig(OptimiserConfig):
    """Every optimisation setting, explicit: library defaults have changed between TRL releases.

    The defaults are the `sft` section of config.yaml; `PRETRAIN_DEFAULTS` turns them into `model.pretrain`'s.
    """

    learning_rate: float = 5e-4
    warmup_ratio: float = 0.03
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-7
    per_device_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    max_steps: int = 600  # the last trained step, the ladder's end
    schedule_steps: int | None = None  # the learning-rate schedule's horizon; None: max_steps
    save_every: int = 300
    extra_steps: tuple[int, ...] = (5, 25, 50, 100, 200)
    save_total_limit: int = 2
    logging_steps: int = 10
    max_length: int = 128
    group_by_length: bool = False  # batches of similar length: less padding where lengths vary widely
    bf16: bool = False
    seed: int = 0
    completion_only_loss: bool = True
    gradient_checkpointing: bool = False
    deepspeed: str | None = None
    prompt_format: str = "chat_template"  # sftrl.sft_format: the chat template, or the authors' Qwen text headers

    def __post_init__(self):
        object.__setattr__(self, "extra_steps", tuple(self.extra_steps))
        problems = self.optimiser_problems()
        if self.prompt_format not in PROMPT_FORMATS:
            problems.append(f"prompt_format must be one of {PROMPT_FORMATS}, not {self.prompt_format!r}")
        if self.save_total_limit < 2:
            # Rotation deletes the previous checkpoint before the new one is marked complete.
            problems.append("save_total_limit must be at least 2 so a complete checkpoint always exists")
        for name in ("max_steps", "save_every", "per_device_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, not {getattr(self, name)}")
        if problems:
            raise ValueError("sft: " + "; ".join(problems))
        check_schedule(self.max_steps, self.schedule_steps)

    @property
    def horizon(self) -> int:
        """The steps the warm-up and decay are laid out over: what the trainer is told is max_steps."""
        return self.schedule_steps or self.max_steps


# Pretraining the tiny base (`model.pretrain`): the same trainer, a longer and hotter schedule, one exported
# model. The values where config.yaml's `model.pretrain` differs from its `sft`.
PRETRAIN_DEFAULTS = {
    "learning_rate": 2e-3,
    "weight_decay": 0.01,
    "adam_epsilon": 1e-8,
    "per_device_batch_size": 128,
    "max_steps": 1200,
    "save_every": 100,
    "extra_steps": (),
    "logging_steps": 50,
    "max_length": 256,
    "group_by_length": True,
}


def ladder_steps(cfg: SftConfig) -> list[int]:
    """Steps that get an evaluation and a checkpoint: the ladder the workflow's rules expect."""
    return config_ladder_steps(cfg.max_steps, cfg.save_every, cfg.extra_steps)


def prompt_completion_dataset(records: Sequence[dict]) -> Dataset:
    """TRL's conversational prompt/completion form; other record fields would confuse its type sniffing."""
    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in records])


def training_dataset(records: Sequence[dict], tokenizer: PreTrainedTokenizerBase, prompt_format: str) -> Dataset:
    """The records as the trainer takes them in `prompt_format` (sftrl.sft_format): conversations that TRL
    renders with the chat template, or the token ids of the authors' Qwen format, which TRL takes as they are."""
    if prompt_format == "chat_template":
        return prompt_completion_dataset(records)
    problem = tokenizer_problem(tokenizer.all_special_tokens, list(tokenizer.get_vocab()))
    if problem:
        raise ValueError(f"sft.prompt_format {prompt_format} cannot apply to this model: {problem}")
    return Dataset.from_list([headers_as_text(tokenizer, r["prompt"], r["completion"]) for r in records])


def record_texts(records: Iterable[dict]) -> Iterable[str]:
    """Every text of a record, for building a vocabulary: its `text` field and the contents of its
    `prompt`, `completion` and `messages` conversations."""
    for record in records:
        if isinstance(record.get("text"), str):
            yield record["text"]
        for key in ("prompt", "completion", "messages"):
            for message in record.get(key, []):
                yield message["content"]


# Replies that draw every kind of feedback from the verifier on PROBE_HAND under the ID rule, so the
# tiny model's vocabulary holds the words of any feedback turn it can meet in an episode.
PROBE_HAND = (7, 13, 7, 1)
FEEDBACK_PROBES = (
    "",  # no answer
    "numbers 7 10 7 1 ; 7 + 7 = 15",  # step 1 : 7 + 7 is 14 not 15
    "numbers 7 10 7 1 ; 7 - 1 = 5",  # step 1 : 7 - 1 is 6 not 5, and so on for every operator
    "numbers 7 10 7 1 ; 7 * 1 = 8",
    "numbers 7 10 7 1 ; 7 / 1 = 8",
    "numbers 7 10 7 1 ; 7 + 7 = 14 ; 14 + 10 = 24 ; 24 * 1",  # incomplete (the last result is missing)
    "numbers 7 10 7 1 ; 7 plus 7 = 14",  # step 1 illegal
    "numbers 7 10 7 1 ; 99 + 1 = 100",  # step 1 number 99 not available
    "numbers 7 10 7 1 ; 7 - 7 = 0 ; 10 / 0 = 1",  # step 2 division by zero
    "numbers 7 10 7 1 ; 7 * 7 = 49 ; 49 - 10 = 39 ; 39 + 1 = 40",  # value 40 not 24
    "numbers 7 10 7 1 ; 10 * 7 = 70 ; 70 / 7 = 10",  # unused 1 10
    " ; ".join(["1 + 1 = 2"] * 17),  # too many steps
    "7 ** 7",  # illegal formula
    "1 + 1",  # number 1 used too often
)


def feedback_texts(style: str) -> list[str]:
    """Every kind of feedback turn: of the verifier in any layout, and in the style's strict layout."""
    rule = cards.RULES["id"]
    layouts = [None, *([style] if style in cards.STRICT_LAYOUTS else [])]
    return [
        cards.feedback(cards.verify(reply, PROBE_HAND, rule, layout=layout), style)
        for layout in layouts
        for reply in FEEDBACK_PROBES
    ]


def vocabulary_texts(records: Iterable[dict], style: str) -> Iterable[str]:
    """Texts whose words the tiny model must know: every text of the records, the prompt of every
    episode record (a hand and a rule, no conversation yet), and every kind of feedback turn."""
    for record in records:
        yield from record_texts([record])
        if "prompt" not in record and {"hand", "rule", "target"} <= record.keys():
            rule = data.rule_from_record(record["rule"])
            yield cards.prompt(tuple(record["hand"]), rule, record["target"], style)
    yield from feedback_texts(style)


def fingerprint(cfg: SftConfig, records: Sequence[dict], initial: str) -> str:
    """Identity of a training run: its settings, its start model and the texts it trains on."""
    return training_run.fingerprint(asdict(cfg), ([r["prompt"], r["completion"]] for r in records), initial)


def discard_unusable(work_dir: Path, run: str) -> None:
    """Remove half-written checkpoints and those of another run, so neither is resumed nor rotated in,
    and stored ladder exports of another run."""
    discard_unusable_checkpoints(work_dir, run)
    exports.discard_foreign(work_dir, run, LADDER_STORE)


def resume_point(
    work_dir: Path,
    run: str,
    steps: Iterable[int],
    ladder_dir_for_step: Callable[[int], str | os.PathLike | None],
) -> tuple[int, Path] | None:
    """The newest complete checkpoint of this run from which every earlier ladder directory can still
    be delivered: already in place, or kept in the work directory's store (outputs that Snakemake
    deleted before a rerun come back from there)."""

    def deliverable(step: int) -> bool:
        target = ladder_dir_for_step(step)
        return target is None or holds(Path(target), step, run) or holds(stored(work_dir, step), step, run)

    for step, path in reversed(checkpoints(work_dir)):
        if is_complete(path, step, run) and all(deliverable(s) for s in steps if s <= step):
            return step, path
    return None


def stored(work_dir: Path, step: int) -> Path:
    return exports.stored(work_dir, step, LADDER_STORE)


def named_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A trainer log entry with its eval set's name in every eval metric: TRL logs token accuracy and
    entropy of an eval set as `eval_entropy` whatever the set, renamed here after it (`eval_ood_entropy`)."""
    sets = [m.group(1) for key in entry if (m := EVAL_LOSS_RE.match(key))]
    if len(sets) != 1:
        return dict(entry)
    return {(f"eval_{sets[0]}_{key[5:]}" if key in TRL_EVAL_METRICS else key): value for key, value in entry.items()}


def write_log(log_path: str | os.PathLike, history: Sequence[dict]) -> None:
    """One JSONL row per step, merging the trainer's train and eval entries of that step (`named_entry`)."""
    rows: dict[int, dict] = {}
    for entry in history:
        step = entry.get("step", 0)
        rows.setdefault(step, {"step": step}).update({k: v for k, v in named_entry(entry).items() if k != "step"})
    io.write_jsonl(log_path, [rows[step] for step in sorted(rows)])


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class LadderCallback(TrainerCallback):
    """Forces evaluation and a checkpoint at ladder steps, exports ladder directories, marks completion."""

    def __init__(
        self,
        steps: Iterable[int],
        ladder_dir_for_step: Callable[[int], str | os.PathLike | None],
        work_dir: Path,
        run: str,
        evaluate: bool,
        provenance: dict | None,
        export_dtype: str | None = None,
    ):
        self.steps = set(steps)
        self.export_dtype = export_dtype  # ladder directories in this dtype (trained as float32 masters)
        self.ladder_dir_for_step = ladder_dir_for_step
        self.work_dir = work_dir
        self.run = run
        self.evaluate = evaluate
        self.provenance = provenance or {}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_log = True
            control.should_evaluate = self.evaluate
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        _barrier()  # every rank has written its part of the checkpoint (DeepSpeed shards)
        if state.is_world_process_zero:
            step = state.global_step
            checkpoint = self.work_dir / f"checkpoint-{step}"
            target = self.ladder_dir_for_step(step) if step in self.steps else None
            if target is not None:
                store = stored(self.work_dir, step)
                if not holds(store, step, self.run):
                    self.export(checkpoint, store, step)
                publish(store, Path(target), step, self.run)
            mark_complete(checkpoint, step, self.run)
        return control

    def export(self, checkpoint: Path, store: Path, step: int) -> None:
        """Copy the model part of a checkpoint, with its provenance, into the store, atomically."""
        with io.atomic_path(store) as tmp:
            tmp.mkdir()
            for item in checkpoint.iterdir():
                if item.is_file() and not TRAINER_FILES.match(item.name):
                    shutil.copy2(item, tmp / item.name)
            if self.export_dtype:
                cast_weights(tmp, self.export_dtype)
            io.write_json(tmp / "provenance.json", {**self.provenance, "step": step, "fingerprint": self.run})
            check_model_dir(tmp)


class StopCallback(TrainerCallback):
    """Ends training at the last trained step when the schedule's horizon lies beyond it."""

    def __init__(self, last_step: int):
        self.last_step = last_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.last_step:
            control.should_training_stop = True
        return control


class SftTrainer(SFTTrainer):
    """TRL's SFT trainer that also builds the schedules the Hugging Face trainers do not ship
    (`sftrl.trainer_args.CUSTOM_SCHEDULES`, e.g. the authors' log warm-up); under DeepSpeed too, which takes
    the trainer's scheduler when its own config names none."""

    def __init__(self, *args, schedule: str, **kwargs):
        self.schedule = schedule
        super().__init__(*args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.schedule in CUSTOM_SCHEDULES:
            warmup = self.args.get_warmup_steps(num_training_steps)
            self.lr_scheduler = CUSTOM_SCHEDULES[self.schedule](
                cast(torch.optim.Optimizer, optimizer or self.optimizer), warmup
            )
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)


def trainer_config(cfg: SftConfig, work_dir: Path) -> SFTConfig:
    """TRL arguments with every value that matters stated; evaluation and saving are driven by the ladder."""
    return SFTConfig(
        output_dir=str(work_dir),
        max_steps=cfg.horizon,  # StopCallback ends the run at cfg.max_steps
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        **optimiser_args(cfg, cfg.seed, cfg.bf16),
        activation_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing=cfg.gradient_checkpointing,  # TRL's own default for this alias is True
        deepspeed=cfg.deepspeed,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy="no",
        save_strategy="no",
        save_total_limit=cfg.save_total_limit,
        save_only_model=False,
        prediction_loss_only=True,
        report_to=[],
        disable_tqdm=True,  # a log row per logging step, not a progress bar (the job log is read, not watched)
        ddp_find_unused_parameters=False,  # every parameter gets a gradient; the search costs a graph walk
        dataloader_num_workers=0,
        dataloader_drop_last=False,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        max_length=cfg.max_length,
        completion_only_loss=cfg.completion_only_loss,
        assistant_only_loss=False,
        packing=False,
        padding_free=False,
        shuffle_dataset=False,
        loss_type="nll",
    )


@dataclass
class TrainResult:
    global_step: int
    resumed_from: Path | None
    fingerprint: str
    ladder: list[int] = field(default_factory=list)


def train(
    model: PreTrainedModel | str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase | None,
    train_records: Sequence[dict],
    eval_records: dict[str, Sequence[dict]],
    cfg: SftConfig,
    work_dir: str | os.PathLike,
    ladder_dir_for_step: Callable[[int], str | os.PathLike | None],
    log_path: str | os.PathLike,
    initial: str = "",
    provenance: dict | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    tracker: Tracker | None = None,
) -> TrainResult:
    """Full-parameter SFT on prompt/completion records, with a checkpoint ladder.

    `model` is a model with its `tokenizer`, or a model directory or hub id (tokenizer None) that is
    loaded with `dtype` only once the trainer arguments exist, so DeepSpeed ZeRO-3 partitions the
    weights while they load, and not at all when the run is already complete.
    `ladder_dir_for_step(step)` names the exported model directory of a ladder step, or None to keep
    only the resumable checkpoint. `initial` identifies the starting model (a directory's is derived
    from its files) so checkpoints of a run from another model are not resumed. Runs unchanged under
    `accelerate launch`: only the main process removes, exports and writes. `tracker` gets the trainer's
    log rows live.
    """
    work_dir = Path(work_dir)
    steps = ladder_steps(cfg)
    if isinstance(model, (str, os.PathLike)) and not initial:
        initial = model_dir_identity(model) if Path(model).is_dir() else str(model)
    run = fingerprint(cfg, train_records, initial)
    main_process = training_run.launched_as_main()
    if main_process:
        discard_unusable(work_dir, run)
    resume_step, resume = resume_point(work_dir, run, steps, ladder_dir_for_step) or (0, None)
    if main_process:
        for step in steps:
            target = ladder_dir_for_step(step)
            if step <= resume_step and target is not None:
                publish(stored(work_dir, step), Path(target), step, run)
    history = training_run.finished_history(resume, cfg.max_steps)
    if history is not None:
        if main_process:
            write_log(log_path, history)
        return TrainResult(cfg.max_steps, resume, run, steps)
    if resume is not None:
        log.info("resuming from %s", resume)

    args = trainer_config(cfg, work_dir)
    export_dtype = None
    if isinstance(model, (str, os.PathLike)):
        # DeepSpeed keeps float32 master weights of a bf16 model itself; without it they are the model's own
        # weights (`master_dtype`), cfg.bf16 the compute dtype, and the ladder is written in `dtype`.
        weights = dtype if cfg.deepspeed else master_dtype(dtype)
        export_dtype = dtype if weights != dtype else None
        model, tokenizer = load_model(model, dtype=weights, trust_remote_code=trust_remote_code)
    tokenizer = cast(PreTrainedTokenizerBase, tokenizer)
    eval_sets = {
        name: training_dataset(records, tokenizer, cfg.prompt_format) for name, records in eval_records.items()
    }
    trainer = SftTrainer(
        schedule=cfg.lr_scheduler_type,
        model=model,
        args=args,
        train_dataset=training_dataset(train_records, tokenizer, cfg.prompt_format),
        eval_dataset=eval_sets or None,
        processing_class=tokenizer,
        callbacks=[
            LadderCallback(steps, ladder_dir_for_step, work_dir, run, bool(eval_sets), provenance, export_dtype),
            training_run.LogCallback(log_path, write_log),
            StopCallback(cfg.max_steps),
            *([training_run.TrackerCallback(tracker, named_entry)] if tracker is not None else []),
        ],
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if trainer.is_world_process_zero():
        write_log(log_path, trainer.state.log_history)
    return TrainResult(trainer.state.global_step, resume, run, steps)


def plain_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[dict],
    steps: int,
    lr: float,
    batch: int = 32,
    seed: int = 0,
) -> PreTrainedModel:
    """Completion-only SFT on prompt/completion records in a plain loop, without the trainer, its ladder or
    checkpoints: a model that answers in the task's format (the arithmetic mostly not learnt), the start
    that RL tests and benchmarks need in seconds. Returns the model, in eval mode."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        rows, labels = [], []
        for record in rng.sample(list(records), batch):
            text = tokenizer.apply_chat_template(record["prompt"], tokenize=False, add_generation_prompt=True)
            prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
            reply = tokenizer(record["completion"][0]["content"], add_special_tokens=False)["input_ids"]
            reply.append(tokenizer.eos_token_id)
            rows.append(prompt + reply)
            labels.append([-100] * len(prompt) + reply)
        width = max(map(len, rows))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        target = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
        loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


def pretrain(
    records: Sequence[dict],
    tokenizer_texts: Iterable[str],
    tiny_cfg: TinyModelConfig,
    cfg: SftConfig,
    files: training_run.RunFiles,
) -> TrainResult:
    """Build the tokenizer and the tiny model, train it on the corpus, export the last step to
    `files.out_dir`.

    The vocabulary comes from the corpus plus `tokenizer_texts` (evaluation prompts, feedback messages),
    so every word the model will ever read is a token.
    """
    tokenizer = build_tokenizer([*record_texts(records), *tokenizer_texts])
    model = build_tiny_model(tokenizer, tiny_cfg, cfg.seed)
    initial = io.dumps({"tiny": asdict(tiny_cfg), "vocab": tokenizer.get_vocab()})
    return train(
        model,
        tokenizer,
        records,
        {},
        cfg,
        files.work_dir,
        lambda step: files.out_dir if step == cfg.max_steps else None,
        files.log_path,
        initial=initial,
        provenance=files.provenance,
        tracker=files.tracker,
    )


def sft_config(section: dict, seed: int, where: str = "sft", defaults: dict | None = None) -> SftConfig:
    """SftConfig from a config section over `defaults`; unknown keys are an error, the seed defaults to
    the experiment's."""
    return from_dict(SftConfig, {"seed": seed, **(defaults or {}), **section}, where)


def run_sft(
    config: dict,
    base: str | os.PathLike,
    train_path: str | os.PathLike,
    eval_paths: dict[str, str | os.PathLike],
    models_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    log_path: str | os.PathLike,
    tracker: Tracker | None = None,
) -> TrainResult:
    """The SFT stage: fine-tune the base model directory; ladder directories are `models_dir/sft-{step}`.

    `config` holds `seed`, `sft` (SftConfig keys) and optionally `model` (`dtype`, `trust_remote_code`).
    """
    cfg = sft_config(config.get("sft", {}), config["seed"])
    model_section = config.get("model", {})
    return train(
        str(base),
        None,
        io.read_jsonl(train_path),
        {name: io.read_jsonl(path) for name, path in eval_paths.items()},
        cfg,
        work_dir,
        lambda step: Path(models_dir) / sft_model(step),
        log_path,
        provenance={**make_provenance(config, cfg.seed), "resolved": {"sft": asdict(cfg)}},
        dtype=model_section.get("dtype", "float32"),
        trust_remote_code=model_section.get("trust_remote_code", False),
        tracker=tracker,
    )


def run_pretrain(
    config: dict,
    corpus_path: str | os.PathLike,
    extra_text_paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    log_path: str | os.PathLike,
    tracker: Tracker | None = None,
) -> TrainResult:
    """The base stage: pretrain the tiny model on the corpus.

    `config["model"]["tiny"]` holds TinyModelConfig keys and `config["model"]["pretrain"]` SftConfig keys
    over PRETRAIN_DEFAULTS; both may be absent; `config["task"]["style"]` renders episode prompts. The
    extra files (JSONL records, see vocabulary_texts) only add words to the vocabulary.
    """
    model_section = config.get("model", {})
    tiny_cfg = from_dict(TinyModelConfig, model_section.get("tiny", {}), "model.tiny")
    cfg = sft_config(model_section.get("pretrain", {}), base_seed(config), "model.pretrain", PRETRAIN_DEFAULTS)
    ladder_steps(cfg)
    style = config.get("task", {}).get("style", "compact")
    extra = list(vocabulary_texts([r for path in extra_text_paths for r in io.read_jsonl(path)], style))
    return pretrain(
        io.read_jsonl(corpus_path),
        extra,
        tiny_cfg,
        cfg,
        training_run.RunFiles(
            Path(out_dir),
            Path(work_dir),
            Path(log_path),
            provenance={
                **make_provenance(config, cfg.seed),
                "resolved": {"tiny": asdict(tiny_cfg), "pretrain": asdict(cfg)},
            },
            tracker=tracker,
        ),
    )
