"""SFT with a checkpoint ladder: learning, ladder export, resume after a kill, pretraining."""

import json
import logging
import os
import random
import re
import runpy
import shutil
import subprocess
import sys
from dataclasses import asdict, replace

import pytest
import torch
from safetensors.torch import load_file

from sftrl import cards, data, io, sft
from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, load_model, save_model

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = TinyModelConfig(hidden_size=128, num_hidden_layers=2, intermediate_size=256, max_position_embeddings=128)
FAST = sft.SftConfig(
    learning_rate=3e-3,
    warmup_ratio=0.0,
    per_device_batch_size=4,
    max_steps=12,
    save_every=4,
    extra_steps=(),
    logging_steps=1,
    max_length=64,
)


def compact_records(n: int, seed: int = 0, rule: str = "id") -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        hand = tuple(cards.deal(rng, cards.RULES[rule], 24))
        formula = cards.solutions(hand, cards.RULES[rule], 24)[0]
        records.append(data.example(f"r{i}", hand, cards.RULES[rule], 24, formula, "compact"))
    return records


@pytest.fixture(scope="module")
def records():
    return compact_records(16)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, records):
    texts = list(sft.record_texts(records + compact_records(8, seed=1, rule="ood")))
    tokenizer = build_tokenizer(texts)
    path = tmp_path_factory.mktemp("base") / "base"
    save_model(build_tiny_model(tokenizer, SMALL, seed=0), tokenizer, path)
    return path


def log_rows(path) -> dict[int, dict]:
    return {row["step"]: row for row in io.read_jsonl(path)}


def test_ladder_steps():
    cfg = sft.SftConfig(max_steps=100, save_every=30, extra_steps=[5, 10, 30])
    assert sft.ladder_steps(cfg) == [5, 10, 30, 60, 90, 100]
    assert sft.ladder_steps(replace(cfg, extra_steps=(), save_every=100)) == [100]
    for bad in (0, 101):
        with pytest.raises(ValueError, match="extra_steps"):
            sft.ladder_steps(replace(cfg, extra_steps=(bad,)))


def test_config_is_strict():
    with pytest.raises(ValueError, match="unknown key"):
        sft.sft_config({"learning_rate": 1e-4, "lr": 1e-4}, seed=0)
    cfg = sft.sft_config({"extra_steps": [2, 4]}, seed=7)
    assert cfg.seed == 7 and cfg.extra_steps == (2, 4)
    with pytest.raises(ValueError, match="warmup_ratio"):
        sft.SftConfig(warmup_ratio=3)


def test_sft_learns_the_answers_and_exports_the_ladder(tmp_path, base_dir, records):
    train_set = records[:4]
    model, tokenizer = load_model(base_dir)
    cfg = replace(FAST, max_steps=100, save_every=50, extra_steps=(5,), per_device_batch_size=8, logging_steps=5)
    result = sft.train(
        model,
        tokenizer,
        train_set * 8,
        {"train": train_set, "ood": compact_records(4, 2, "ood")},
        cfg,
        tmp_path / "work",
        lambda step: tmp_path / f"sft-{step}",
        tmp_path / "log.jsonl",
    )
    assert result.global_step == 100 and result.resumed_from is None

    assert sorted(p.name for p in tmp_path.glob("sft-*")) == ["sft-100", "sft-5", "sft-50"]
    rows = log_rows(tmp_path / "log.jsonl")
    assert {"eval_train_loss", "eval_ood_loss", "eval_ood_mean_token_accuracy"} <= rows[5].keys()
    assert rows[100]["eval_train_loss"] < 0.1 * rows[5]["eval_train_loss"]
    assert rows[100]["loss"] < rows[1]["loss"]

    trained, trained_tokenizer = load_model(tmp_path / "sft-100")
    assert json.loads((tmp_path / "sft-100" / "provenance.json").read_text())["step"] == 100
    prompts = [
        trained_tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        for r in train_set
    ]
    batch = trained_tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = trained.generate(**batch, max_new_tokens=40, do_sample=False)
    new = out[:, batch["input_ids"].shape[1] :]
    for row, record in zip(new, train_set, strict=False):
        assert tokenizer.eos_token_id in row.tolist(), "generation stops at the end of the turn"
        assert trained_tokenizer.decode(row, skip_special_tokens=True) == record["completion"][0]["content"]


KILLER = r"""
import os, runpy, signal, sys
from transformers import Trainer

kill_at = int(os.environ["KILL_AT_STEP"])
save_optimizer = Trainer._save_optimizer_and_scheduler

def die_mid_save(self, output_dir):
    if self.state.global_step == kill_at:  # the model is written, the optimizer state is not
        os.kill(os.getpid(), signal.SIGKILL)
    save_optimizer(self, output_dir)

Trainer._save_optimizer_and_scheduler = die_mid_save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def sft_args(tmp_path, base_dir, run: str) -> list[str]:
    config = {"seed": 0, "sft": {k: v for k, v in asdict(FAST).items() if k != "seed"}}
    return [
        "--config",
        json.dumps(config),
        "--base",
        str(base_dir),
        "--train",
        str(tmp_path / "train.jsonl"),
        "--eval-set",  # several sets after one flag, as the workflow's rule passes them
        f"id={tmp_path / 'eval.jsonl'}",
        f"ood={tmp_path / 'eval_ood.jsonl'}",
        "--models-dir",
        str(tmp_path / run / "models"),
        "--work-dir",
        str(tmp_path / run / "work"),
        "--log",
        str(tmp_path / run / "log.jsonl"),
    ]


def run_script(args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [os.path.join(ROOT, "scripts", "sft.py"), *args])
    runpy.run_path(sys.argv[0], run_name="__main__")


def test_killed_mid_save_resumes_from_last_complete_checkpoint(tmp_path, base_dir, records, monkeypatch, caplog):
    io.write_jsonl(tmp_path / "train.jsonl", records)
    io.write_jsonl(tmp_path / "eval.jsonl", records[:4])
    io.write_jsonl(tmp_path / "eval_ood.jsonl", compact_records(4, 2, "ood"))
    env = {**os.environ, "KILL_AT_STEP": "8", "PYTHONPATH": os.path.join(ROOT, "src"), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            os.path.join(ROOT, "scripts", "sft.py"),
            *sft_args(tmp_path, base_dir, "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    work, models = tmp_path / "run" / "work", tmp_path / "run" / "models"
    assert (work / "checkpoint-8" / "model.safetensors").exists(), "killed after the model was written"
    assert not (work / "checkpoint-8" / sft.COMPLETE_MARKER).exists()
    assert sorted(p.name for p in models.iterdir()) == ["sft-4"]
    first_ladder_dir = (models / "sft-4" / "model.safetensors").stat()

    with caplog.at_level(logging.INFO, logger="sftrl"):
        run_script(sft_args(tmp_path, base_dir, "run"), monkeypatch)
    assert f"removing checkpoint {work / 'checkpoint-8'}: incomplete" in caplog.text
    assert f"resuming from {work / 'checkpoint-4'}" in caplog.text
    assert sorted(p.name for p in models.iterdir()) == ["sft-12", "sft-4", "sft-8"]
    untouched = (models / "sft-4" / "model.safetensors").stat()
    assert (untouched.st_ino, untouched.st_mtime_ns) == (
        first_ladder_dir.st_ino,
        first_ladder_dir.st_mtime_ns,
    )
    assert sorted(p.name for p in work.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-8"]
    state = json.loads((work / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["global_step"] == 12

    # Rerunning a finished run trains nothing and rewrites nothing.
    last_ladder_dir = (models / "sft-12" / "model.safetensors").stat()
    run_script(sft_args(tmp_path, base_dir, "run"), monkeypatch)
    again = (models / "sft-12" / "model.safetensors").stat()
    assert (again.st_ino, again.st_mtime_ns) == (last_ladder_dir.st_ino, last_ladder_dir.st_mtime_ns)
    assert max(log_rows(tmp_path / "run" / "log.jsonl")) == 12

    # Snakemake deletes a job's outputs before rerunning it: they come back from the work directory.
    for step in (4, 8, 12):
        shutil.rmtree(models / f"sft-{step}")
    run_script(sft_args(tmp_path, base_dir, "run"), monkeypatch)
    assert sorted(p.name for p in models.iterdir()) == ["sft-12", "sft-4", "sft-8"]
    assert (models / "sft-4" / "model.safetensors").read_bytes() == (
        work / "ladder" / "step-4" / "model.safetensors"
    ).read_bytes()

    # The interrupted run ends where an uninterrupted one does: same weights, same log.
    run_script(sft_args(tmp_path, base_dir, "reference"), monkeypatch)
    resumed = load_file(models / "sft-12" / "model.safetensors")
    reference = load_file(tmp_path / "reference" / "models" / "sft-12" / "model.safetensors")
    assert all(torch.allclose(resumed[k], reference[k], atol=1e-6) for k in reference)
    resumed_log, reference_log = (
        log_rows(tmp_path / "run" / "log.jsonl"),
        log_rows(tmp_path / "reference" / "log.jsonl"),
    )
    assert sorted(resumed_log) == sorted(reference_log) == list(range(1, 13))
    for step in (1, 5, 12):
        assert resumed_log[step]["loss"] == pytest.approx(reference_log[step]["loss"], rel=1e-5)
    for name in ("id", "ood"):
        assert resumed_log[8][f"eval_{name}_loss"] == pytest.approx(reference_log[8][f"eval_{name}_loss"], rel=1e-5)
    provenance = json.loads((models / "sft-8" / "provenance.json").read_text())
    assert provenance["config"]["sft"]["max_steps"] == 12 and provenance["step"] == 8


def make_checkpoint(work, step: int, marker: dict | None) -> None:
    path = work / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"")
    if marker is not None:
        io.write_json(path / sft.COMPLETE_MARKER, marker)


def test_only_complete_checkpoints_of_the_same_run_are_resumed(tmp_path):
    work = tmp_path / "work"
    make_checkpoint(work, 2, {"step": 2, "fingerprint": "run"})
    make_checkpoint(work, 3, {"step": 30, "fingerprint": "run"})  # copied or renamed: not its own marker
    make_checkpoint(work, 4, None)  # killed mid-save
    make_checkpoint(work, 6, {"step": 6, "fingerprint": "another run"})
    (work / "checkpoint-5").mkdir()
    (work / "checkpoint-5" / sft.COMPLETE_MARKER).write_text('{"step": 5, "fing')  # torn marker
    no_ladder = lambda step: None  # noqa: E731
    assert sft.resume_point(work, "run", [], no_ladder) == (2, work / "checkpoint-2")
    assert sft.resume_point(work, "another run", [], no_ladder) == (6, work / "checkpoint-6")
    assert sft.resume_point(tmp_path / "absent", "run", [], no_ladder) is None

    sft.discard_unusable(work, "run")
    assert sorted(p.name for p in work.iterdir()) == ["checkpoint-2"]


def test_resume_needs_every_earlier_ladder_directory_deliverable(tmp_path):
    work, models = tmp_path / "work", tmp_path / "models"
    for step in (4, 8):
        make_checkpoint(work, step, {"step": step, "fingerprint": "run"})
    io.write_json(sft.stored(work, 8) / "provenance.json", {"step": 8, "fingerprint": "run"})
    ladder = lambda step: models / f"sft-{step}"  # noqa: E731
    assert sft.resume_point(work, "run", [4, 8], ladder) is None, "nothing can deliver sft-4"
    io.write_json(models / "sft-4" / "provenance.json", {"step": 4, "fingerprint": "run"})
    assert sft.resume_point(work, "run", [4, 8], ladder) == (8, work / "checkpoint-8")


def test_a_changed_run_does_not_resume(tmp_path, base_dir, records):
    model, tokenizer = load_model(base_dir)
    cfg = replace(FAST, max_steps=2, save_every=2)
    first = sft.train(
        model,
        tokenizer,
        records,
        {},
        cfg,
        tmp_path / "work",
        lambda s: tmp_path / f"sft-{s}",
        tmp_path / "log.jsonl",
    )
    model, tokenizer = load_model(base_dir)
    second = sft.train(
        model,
        tokenizer,
        records,
        {},
        replace(cfg, learning_rate=1e-3),
        tmp_path / "work",
        lambda s: tmp_path / f"sft-{s}",
        tmp_path / "log.jsonl",
    )
    assert second.resumed_from is None and second.fingerprint != first.fingerprint
    provenance = json.loads((tmp_path / "sft-2" / "provenance.json").read_text())
    assert provenance["fingerprint"] == second.fingerprint, "a stale ladder directory is replaced"


def test_log_rows_merge_train_and_per_set_eval_entries(tmp_path):
    history = [
        {"step": 1, "loss": 2.0, "learning_rate": 0.1, "grad_norm": 1.0},
        {"step": 2, "loss": 1.0, "learning_rate": 0.1, "grad_norm": 1.0},
        {"step": 2, "eval_id_loss": 1.5, "eval_mean_token_accuracy": 0.5},
        {"step": 2, "eval_ood_loss": 2.5, "eval_mean_token_accuracy": 0.25},
    ]
    sft.write_log(tmp_path / "log.jsonl", history)
    rows = io.read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[1] == {
        "step": 2,
        "loss": 1.0,
        "learning_rate": 0.1,
        "grad_norm": 1.0,
        "eval_id_loss": 1.5,
        "eval_id_mean_token_accuracy": 0.5,
        "eval_ood_loss": 2.5,
        "eval_ood_mean_token_accuracy": 0.25,
    }


NUMBER = re.compile(r"-?\d+(/\d+)?")


def mutate(words: list[str], rng: random.Random) -> str:
    """A plausible wrong reply: the reference answer with one random edit."""
    words = list(words)
    kind = rng.randrange(6)
    i = rng.randrange(len(words))
    if kind == 0:
        words[i] = rng.choice(["+", "-", "*", "/", "=", ";", "(", "0", "99", "x", str(rng.randint(1, 30))])
    elif kind == 1:
        del words[i]
    elif kind == 2:
        words = words[:i]
    elif kind == 3:
        words += ["; 1 + 1 = 2"] * rng.randint(1, 20)
    elif kind == 4:
        words.insert(i, rng.choice(["+", "7", "=", ";"]))
    else:
        words = [w for w in words if w not in ("numbers", ";") and not w.startswith("=")][: rng.randint(1, 9)]
    return " ".join(words)


def test_feedback_probes_cover_every_feedback_word():
    """Guards FEEDBACK_PROBES against a new feedback template in the verifier."""
    known = {word for text in sft.feedback_texts("compact") for word in text.split()}
    rng = random.Random(0)
    for i in range(400):
        rule = cards.RULES["id" if i % 2 else "ood"]
        hand = cards.deal(rng, rule, 24)
        formula = rng.choice(cards.solutions(hand, rule, 24))
        reply = mutate(cards.answer(hand, rule, formula, 24, "compact").split(), rng)
        verdict = cards.verify(reply, hand, rule, 24)
        if not verdict.correct:  # a correct reply ends the episode without feedback
            words = cards.feedback(verdict, "compact").split()
            assert {w for w in words if w not in known and not NUMBER.fullmatch(w)} == set(), reply


def test_pretrain_builds_tokenizer_and_model_through_the_same_trainer(tmp_path, records):
    io.write_jsonl(tmp_path / "corpus.jsonl", records)
    episode = data.episode_record("ood-0", (13, 5, 8, 6), cards.RULES["ood"], 24)
    io.write_jsonl(tmp_path / "extra.jsonl", [episode, {"text": "hello world"}])
    config = {
        "seed": 0,
        "task": {"style": "compact"},
        "data": {"id_unseen_share": 0.2},  # what decides the corpus's exclusions: kept in the provenance
        "model": {
            "source": "tiny",
            "tiny": asdict(SMALL),
            "pretrain": {"max_steps": 4, "save_every": 2, "per_device_batch_size": 4, "group_by_length": True},
        },
    }
    result = sft.run_pretrain(
        config,
        tmp_path / "corpus.jsonl",
        [tmp_path / "extra.jsonl"],
        tmp_path / "base",
        tmp_path / "work",
        tmp_path / "log.jsonl",
    )
    assert result.global_step == 4 and result.ladder == [2, 4]
    assert sorted(p.name for p in tmp_path.glob("work/checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    model, tokenizer = load_model(tmp_path / "base")
    assert model.config.hidden_size == SMALL.hidden_size
    assert len(tokenizer) == model.config.vocab_size
    episode_prompt = cards.prompt((13, 5, 8, 6), cards.RULES["ood"], 24, "compact")
    for text in ["hello world", episode_prompt, *sft.feedback_texts("compact")]:
        assert tokenizer.unk_token_id not in tokenizer(text).input_ids, text
    assert sorted(log_rows(tmp_path / "log.jsonl")) == [1, 2, 4], "first step and every ladder step"
    assert io.read_json(tmp_path / "base" / "provenance.json")["config"]["data"] == {"id_unseen_share": 0.2}


def test_schedule_horizon_beyond_the_last_step_stops_there_with_the_rate_still_high(tmp_path, base_dir, records):
    """The paper's regime: a cosine laid out over many more steps than are trained. Training stops at
    max_steps, exports that ladder step, and the learning rate there is the long schedule's, not zero."""
    cfg = replace(FAST, max_steps=8, schedule_steps=80, save_every=8, warmup_ratio=0.1, logging_steps=1)
    result = sft.train(
        str(base_dir),
        None,
        records[:4] * 4,
        {},
        cfg,
        tmp_path / "work",
        lambda s: tmp_path / f"sft-{s}",
        tmp_path / "log.jsonl",
    )
    assert result.global_step == 8 and (tmp_path / "sft-8").is_dir()
    rates = {
        step: row["learning_rate"] for step, row in log_rows(tmp_path / "log.jsonl").items() if "learning_rate" in row
    }
    assert max(rates) == 8
    warmup = 8  # ceil(0.1 x 80): still warming up at the last trained step, where a cosine over 8 steps ends
    assert rates[8] == pytest.approx(cfg.learning_rate * 7 / warmup, rel=1e-6)  # the 8th step's rate
    with pytest.raises(ValueError, match=r"sft.schedule_steps \(7\) is below sft.max_steps \(8\)"):
        replace(cfg, schedule_steps=7)


def test_the_authors_log_warmup_is_the_schedule_their_sft_log_shows(tmp_path, base_dir, records):
    """lr_scheduler_type warmup_log: DeepSpeed's WarmupLR as the authors' SFT ran it. With their lr 1e-6
    over one epoch of 12,501 steps (3% warm-up: 376 steps) the rate after step t is 0 at step 1, 1.169e-7
    at step 2, 7.77e-7 at step 100 and 1e-6 from step 376 on: what their log shows at each step
    (analysis/sft_6579897_4294967294.out; transformers 4.46 logged the rate after the step's scheduler
    update, transformers 5 logs the rate the step used, one step earlier: the same rates, step by step)."""
    cfg = replace(
        FAST,
        learning_rate=1e-6,
        lr_scheduler_type="warmup_log",
        warmup_ratio=0.03,
        max_steps=4,
        schedule_steps=12501,
        save_every=4,
        logging_steps=1,
    )
    sft.train(
        str(base_dir),
        None,
        records[:4] * 4,
        {},
        cfg,
        tmp_path / "work",
        lambda s: tmp_path / f"sft-{s}",
        tmp_path / "log.jsonl",
    )
    used = {
        step: row["learning_rate"] for step, row in log_rows(tmp_path / "log.jsonl").items() if "learning_rate" in row
    }
    assert used[1] == used[2] == 0.0  # DeepSpeed starts at its minimum, and ln 1 = 0
    assert used[3] == pytest.approx(1.1689632515815068e-07, rel=1e-9)  # their log at step 2
    assert used[4] == pytest.approx(1.8527629184777592e-07, rel=1e-9)  # their log at step 3

    model, tokenizer = load_model(base_dir)
    trainer = sft.SftTrainer(
        schedule="warmup_log",
        model=model,
        args=sft.trainer_config(cfg, tmp_path / "w2"),
        train_dataset=sft.prompt_completion_dataset(records[:4]),
        processing_class=tokenizer,
    )
    trainer.create_optimizer()
    scheduler = trainer.create_scheduler(cfg.horizon)
    rates = {}
    for step in range(1, 401):
        trainer.optimizer.step()
        scheduler.step()
        rates[step] = scheduler.get_last_lr()[0]
    assert rates[2] == pytest.approx(1.169e-7, abs=1e-10)
    assert rates[100] == pytest.approx(7.77e-7, abs=1e-9)
    assert rates[375] < 1e-6 and rates[376] == rates[400] == pytest.approx(1e-6)


def test_bf16_model_trains_float32_masters_and_writes_a_bf16_ladder(tmp_path, base_dir, records):
    """Without DeepSpeed a bf16 model is trained as float32 master weights under bf16 autocast (an update
    far below bf16 resolution is kept), and its ladder written in bf16, as the model came."""
    half = tmp_path / "bf16"
    model, tokenizer = load_model(base_dir)
    save_model(model.to(torch.bfloat16), tokenizer, half)
    cfg = replace(FAST, learning_rate=1e-6, max_steps=2, save_every=2, bf16=True)
    sft.train(
        str(half),
        None,
        records[:4] * 2,
        {},
        cfg,
        tmp_path / "work",
        lambda s: tmp_path / f"sft-{s}",
        tmp_path / "log.jsonl",
        dtype="bfloat16",
    )
    masters = load_file(tmp_path / "work" / "checkpoint-2" / "model.safetensors")
    ladder = load_file(tmp_path / "sft-2" / "model.safetensors")
    start = load_file(half / "model.safetensors")
    assert {t.dtype for t in masters.values()} == {torch.float32}
    assert {t.dtype for t in ladder.values()} == {torch.bfloat16}
    moved = [name for name, t in masters.items() if not torch.equal(t, start[name].float())]
    assert len(moved) == len(masters)  # every tensor took its 1e-6 steps in float32
    assert json.loads((tmp_path / "sft-2" / "config.json").read_text())["dtype"] == "bfloat16"
    assert load_model(tmp_path / "sft-2", "auto")[0].dtype == torch.bfloat16
