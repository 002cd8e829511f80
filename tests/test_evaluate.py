"""Evaluation engine: batched == sequential, episode bookkeeping, metrics, determinism, bad inputs, curves."""

import csv
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from typing import cast

import pytest
import torch
from conftest import ROOT

from sftrl import cards, data, io
from sftrl.config import TaskConfig
from sftrl.curves import COLUMNS, curve_rows, parse_entry, plot_curve, write_curve_csv
from sftrl.evaluate import (
    EvalConfig,
    check_inputs,
    compute_metrics,
    evaluate_model,
    run_episodes,
    run_episodes_sequential,
    wilson_interval,
)
from sftrl.evaluate.backends import HFBackend, VLLMBackend
from sftrl.evaluate.engine import Sampling
from sftrl.evaluate.incremental import IncrementalDecoder, Prefix, reusable
from sftrl.modeling import (
    ModelDirError,
    TinyModelConfig,
    build_tiny_model,
    build_tokenizer,
    load_model,
    save_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TASK = TaskConfig(target=24, style="compact", max_attempts=5, strict_layout=False)  # any layout: replies of every kind
TINY = TinyModelConfig(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=256
)

GREEDY = EvalConfig(batch_size=5, max_new_tokens=24, dtype="float32", seed=0)
# fp32 logits of a left-padded batch differ from the same prompt alone by reduction order only: measured
# <= 1.4e-5 for this model (logits up to ~10). A greedy decision whose top-2 gap exceeds twice the
# difference cannot flip.
MARGIN = 1e-4


def records(n: int, rule: str, seed: int, prefix: str = "") -> list[dict]:
    rng = random.Random(seed)
    return [
        data.episode_record(
            f"{prefix}{rule}-{i:05d}", tuple(cards.deal(rng, cards.RULES[rule], 24)), cards.RULES[rule], 24
        )
        for i in range(n)
    ]


def reference_answer(record: dict) -> str:
    hand, rule = record["hand"], cards.Rule(**record["rule"])
    return cards.answer(hand, rule, cards.solutions(hand, rule, 24)[0], 24, "compact")


@pytest.fixture(scope="module")
def episodes() -> list[dict]:
    return records(8, "id", 1) + records(8, "ood", 2)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, episodes):
    """A ~150k-parameter random Qwen2 whose greedy replies are varied, so equality tests something.

    Default initialisation (std 0.02) gives near-uniform logits: replies of special tokens only, and
    near-ties everywhere. Weights with std 0.3 spread the logits; a larger eos embedding makes some
    replies stop early, so rows of a batch finish at different times.
    """
    tokenizer = build_tokenizer([reference_answer(r) for r in episodes] + ["fail ; value 23 not 24"])
    model = build_tiny_model(tokenizer, TINY, seed=0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        model.model.embed_tokens.weight[tokenizer.eos_token_id] *= 3
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(model, tokenizer, path)
    return path


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model(model_dir, dtype="float32", device="cpu")


@pytest.fixture
def episodes_file(tmp_path, episodes):
    path = tmp_path / "eval_ood.jsonl"
    io.write_jsonl(path, episodes[:6])
    return path


# --- batched engine == one-at-a-time reference -------------------------------------------------


def test_batched_equals_sequential_greedy(loaded, episodes):
    """Identical replies and verdicts, so batching and the reused KV cache are a pure speed-up.

    Why equality is guaranteed rather than lucky: masked holes plus position ids that count only real
    tokens make each row of the batch (its cache reused from the last turn, or left-padded) mathematically
    the same computation as the prompt alone; what is left is fp32 reduction-order noise (<= 1.4e-5 on
    logits of ~10). The forward hook records the top-2 logit gap of every greedy decision of the reference
    run; all gaps exceed MARGIN >> noise, so no argmax can flip.
    """
    model, tokenizer = loaded
    gaps = []

    def record_gap(module, args, output):
        top2 = output.logits[:, -1].float().topk(2, dim=-1).values
        gaps.append(float((top2[:, 0] - top2[:, 1]).min()))

    batched = run_episodes(HFBackend(model, tokenizer, GREEDY), episodes, TASK, progress=False)
    hook = model.register_forward_hook(record_gap)
    try:
        sequential = run_episodes_sequential(HFBackend(model, tokenizer, GREEDY), episodes, TASK, progress=False)
    finally:
        hook.remove()

    assert [r.to_record() for r in batched] == [r.to_record() for r in sequential]
    assert min(gaps) > MARGIN, "a near-tie in the test model: the comparison would test noise; change its seed"
    replies = {t.reply for r in batched for t in r.turns}
    assert len(replies) > 40  # a real comparison, not of identical or empty strings
    assert len({len(t.reply.split()) for r in batched for t in r.turns}) > 5  # rows finish at different times
    assert len({t.category for r in batched for t in r.turns}) >= 3


def test_later_turns_encode_only_what_is_new(loaded, episodes):
    """From the second turn on, the model is fed the feedback and the new header, not the whole conversation
    (a row whose reply does not re-tokenize to the same ids falls back to encoding from the difference)."""
    model, tokenizer = loaded
    fed: list = []
    whole: list = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: fed.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    backend = HFBackend(model, tokenizer, replace(GREEDY, batch_size=16))
    generate = backend.generate

    def measured(conversations, keys=None):
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        whole.append(sum(map(len, tokenizer(texts, add_special_tokens=False)["input_ids"])))
        fed.clear()
        replies = generate(conversations, keys)
        whole[-1] = (whole[-1], fed[0] * len(conversations))  # (tokens of the whole conversations, fed at once)
        return replies

    backend.generate = measured
    try:
        results = run_episodes(backend, episodes, TASK, progress=False)
    finally:
        hook.remove()
    assert len(whole) == max(r.attempts for r in results) >= 3
    assert whole[0][1] >= whole[0][0]  # the first turn encodes everything (plus padding)
    for conversation_tokens, prefill_tokens in whole[1:]:
        assert prefill_tokens < conversation_tokens / 2


def test_a_key_whose_conversation_changed_starts_afresh(loaded, episodes):
    model, tokenizer = loaded
    first, second = (cards.messages(r["hand"], cards.Rule(**r["rule"]), 24, "compact") for r in episodes[:2])
    backend = HFBackend(model, tokenizer, GREEDY)
    backend.generate([first], keys=["k"])
    assert set(backend.prefixes) == {"k"}
    assert backend.generate([second], keys=["k"]) == HFBackend(model, tokenizer, GREEDY).generate([second])
    backend.generate([first], keys=["other"])
    assert set(backend.prefixes) == {"other"}  # keys a call leaves out are forgotten


@pytest.fixture(scope="module")
def vision_loaded(tmp_path_factory, episodes, tiny_mllama):
    """A Llama 3.2 Vision-like model read for text: its cross-attention layer is skipped on every step,
    and must stay so when a turn reuses the cache of the last. Weights spread as in `model_dir`."""
    tokenizer = build_tokenizer([reference_answer(r) for r in episodes] + ["fail ; value 23 not 24"])
    model = tiny_mllama(tokenizer)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        model.model.language_model.embed_tokens.weight[tokenizer.eos_token_id] *= 3
    path = tmp_path_factory.mktemp("model") / "mllama"
    save_model(model, tokenizer, path)
    return load_model(path, dtype="float32", device="cpu")


def test_batched_equals_sequential_for_a_vision_language_model(vision_loaded, episodes):
    model, tokenizer = vision_loaded
    assert type(model).__name__ == "MllamaForConditionalGeneration"
    batched = run_episodes(HFBackend(model, tokenizer, GREEDY), episodes[:6], TASK, progress=False)
    sequential = run_episodes_sequential(HFBackend(model, tokenizer, GREEDY), episodes[:6], TASK, progress=False)
    assert [r.to_record() for r in batched] == [r.to_record() for r in sequential]
    assert max(r.attempts for r in batched) >= 2  # later turns reused the cache
    assert len({t.reply for r in batched for t in r.turns}) > 5


def test_reusable_leaves_a_token_to_encode():
    prefix = Prefix([1, 2, 3], [])
    assert reusable(None, [1, 2, 3, 4]) == 0
    assert reusable(prefix, [1, 2, 3, 4, 5]) == 3
    assert reusable(prefix, [1, 2, 3]) == 2
    assert reusable(prefix, [1, 9, 3, 4]) == 1
    assert reusable(prefix, [7]) == 0


def test_hf_backend_chunks_by_batch_size_and_counts_tokens(loaded, episodes):
    model, tokenizer = loaded
    backend = HFBackend(model, tokenizer, replace(GREEDY, batch_size=3, max_new_tokens=4))
    calls = []
    original = model.generate

    def spy(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(**kwargs)

    model.generate = spy
    try:
        replies = backend.generate(
            [cards.messages(r["hand"], cards.Rule(**r["rule"]), 24, "compact") for r in episodes[:7]]
        )
    finally:
        del model.generate
    assert calls == [3, 3, 1]
    assert len(replies) == 7 and all(isinstance(r, str) for r in replies)
    assert 7 <= backend.tokens_generated <= 7 * 4


def test_sampling_is_seeded(loaded, episodes):
    model, tokenizer = loaded
    cfg = replace(GREEDY, temperature=1.0, seed=11)
    runs = [run_episodes(HFBackend(model, tokenizer, cfg), episodes[:4], TASK, progress=False) for _ in range(2)]
    other = run_episodes(HFBackend(model, tokenizer, replace(cfg, seed=12)), episodes[:4], TASK, progress=False)
    assert [r.to_record() for r in runs[0]] == [r.to_record() for r in runs[1]]
    assert [r.to_record() for r in runs[0]] != [r.to_record() for r in other]


QWEN_SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}


def test_decoding_as_the_checkpoint_configures_it(loaded, episodes):
    """eval.decoding generation_config: each checkpoint's own knobs, as the authors' `generate()` without
    any, seeded; greedy where it does not sample, and different from greedy where it does."""
    model, tokenizer = loaded
    own = replace(GREEDY, decoding="generation_config", seed=3)
    saved = model.generation_config
    try:
        model.generation_config = type(saved)(**{**saved.to_diff_dict(), **QWEN_SAMPLING})
        backend = HFBackend(model, tokenizer, own)
        assert backend.sampling == Sampling(0.7, 0.8, 20, 1.05)
        runs = [run_episodes(HFBackend(model, tokenizer, own), episodes[:6], TASK, progress=False) for _ in range(2)]
        assert [r.to_record() for r in runs[0]] == [r.to_record() for r in runs[1]]
        greedy = run_episodes(HFBackend(model, tokenizer, GREEDY), episodes[:6], TASK, progress=False)
        assert [r.to_record() for r in runs[0]] != [r.to_record() for r in greedy]
        model.generation_config = type(saved)(**{**saved.to_diff_dict(), "do_sample": False})
        assert HFBackend(model, tokenizer, own).sampling == Sampling()  # greedy, as generate() would
        with pytest.raises(ValueError, match="checkpoint's generation config decodes greedily"):
            HFBackend(model, tokenizer, replace(own, samples=2))
    finally:
        model.generation_config = saved
    assert Sampling.of_generation_config({"do_sample": True, "temperature": 0.6}) == Sampling(0.6, 1.0, 50, 1.0)


def test_the_decoders_processors_are_generates(loaded):
    """Repetition penalty, temperature, top-k and top-p as `generate` applies them, on the same logits."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    model, tokenizer = loaded
    sampling = Sampling(0.7, 0.8, 20, 1.05)
    decoder = IncrementalDecoder(model, [tokenizer.eos_token_id], tokenizer.pad_token_id, sampling)
    torch.manual_seed(0)
    vocabulary = model.config.vocab_size
    logits = torch.randn(3, vocabulary) * 3
    prompts = [[1, 2, 3, 3], [5, 6], [7]]
    ids = torch.tensor([[1, 2, 3, 3], [0, 0, 5, 6], [0, 0, 0, 7]])  # 0 is in the pad position only: not held
    ids[1, :2] = ids[1, 2]
    ids[2, :3] = ids[2, 3]
    warpers = LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(1.05),
            TemperatureLogitsWarper(0.7),
            TopKLogitsWarper(20),
            TopPLogitsWarper(0.8),
        ]
    )
    reference = warpers(cast(torch.LongTensor, ids), logits.clone())
    ours = decoder.warpers(ids, decoder.scores(logits.clone(), decoder._seen(prompts, "cpu")))
    assert torch.equal(ours, reference)


# --- episode bookkeeping with a scripted backend -----------------------------------------------


class Scripted:
    """Canned replies per episode (keyed by its first prompt) and attempt; records every call's size."""

    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.calls: list[int] = []

    def generate(self, conversations, keys=None):
        self.calls.append(len(conversations))
        replies = []
        for conversation in conversations:
            attempt = sum(m["role"] == "assistant" for m in conversation)
            replies.append(self.script[conversation[0]["content"]][attempt])
        return replies


def prompt_of(record: dict) -> str:
    return cards.prompt(record["hand"], cards.Rule(**record["rule"]), 24, "compact")


def test_scripted_episodes_stop_at_success_and_survive_hostile_replies(episodes):
    solve_second, garbage, empty, solve_first = episodes[:4]
    rng = random.Random(0)
    megabyte = "".join(rng.choice('((9**9**9)) {"formula": ;=\n0123456789+-*/') for _ in range(1 << 20))
    script = {
        prompt_of(solve_second): ["numbers 1 2 ; 1 + 2 = 3", reference_answer(solve_second)],
        prompt_of(garbage): [megabyte] * 5,
        prompt_of(empty): [""] * 5,
        prompt_of(solve_first): [reference_answer(solve_first)],
    }
    for run in (run_episodes, run_episodes_sequential):
        backend = Scripted(script)
        results = run(backend, [solve_second, garbage, empty, solve_first], TASK, progress=False)
        assert [r.success for r in results] == [True, False, False, True]
        assert [r.attempts for r in results] == [2, 5, 5, 1]
        assert results[0].turns[1].category == "correct" and results[0].turns[1].reward == 5
        assert {t.category for t in results[2].turns} == {"unparsable"}
        assert results[1].turns[0].reply == megabyte
        if run is run_episodes:
            assert backend.calls == [4, 3, 2, 2, 2]  # only live episodes are sent
        else:
            assert backend.calls == [1] * 13
    # The feedback turn of a failed attempt is the next turn's user message.
    assert results[0].turns[1].user.startswith("fail ;")


def test_backend_returning_wrong_count_is_an_error(episodes):
    class Short:
        def generate(self, conversations, keys=None):
            return []

    with pytest.raises(RuntimeError, match="0 replies for 2 conversations"):
        run_episodes(Short(), episodes[:2], TASK, progress=False)


def test_progress_lines_on_stderr(episodes, capsys):
    script = {prompt_of(r): [reference_answer(r)] for r in episodes[:3]}
    run_episodes(Scripted(script), episodes[:3], TASK, progress=True)
    assert "turn 1: 3/3 episodes done, 3 solved" in capsys.readouterr().err


def test_target_mismatch_is_an_error(episodes):
    with pytest.raises(ValueError, match="target 24 but the task config says 23"):
        run_episodes(Scripted({}), episodes[:1], replace(TASK, target=23), progress=False)


# --- metrics --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k, n, low, high",
    [  # scipy.stats.binomtest(k, n).proportion_ci(method="wilson"), i.e. z = the 97.5% normal quantile
        (0, 10, 0.0, 0.277533),
        (5, 10, 0.236593, 0.763407),
        (10, 10, 0.722467, 1.0),
        (234, 234, 0.983849, 1.0),
        (41, 234, 0.131863, 0.229056),
        (1, 1, 0.206549, 1.0),
    ],
)
def test_wilson_interval_known_values(k, n, low, high):
    assert wilson_interval(k, n, z=1.959963984540054) == pytest.approx((low, high), abs=1e-6)


def test_wilson_interval_default_z_closed_forms():
    z2 = 1.96**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_interval(234, 234) == pytest.approx((234 / (234 + z2), 1.0))


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_compute_metrics_counts(episodes):
    script = {
        prompt_of(episodes[0]): ["numbers 1 2 ; 1 + 2 = 3", reference_answer(episodes[0])],
        prompt_of(episodes[1]): [reference_answer(episodes[1])],
    }
    results = run_episodes(Scripted(script), episodes[:2], TASK, progress=False)
    m = compute_metrics(results)
    assert m["n_episodes"] == 2 and m["n_attempts"] == 3
    assert m["success"]["rate"] == 1.0 and m["first_attempt_success"]["k"] == 1
    assert m["mean_reward_per_episode"] == pytest.approx((results[0].turns[0].reward + 5 + 5) / 2)
    assert m["verdicts_first_attempt"]["counts"]["correct"] == 1
    assert sum(m["verdicts_all_attempts"]["counts"].values()) == 3
    # The first reply states values 1 2 (not the hand's), the two reference answers state the right ones.
    assert (m["rule_following"]["k"], m["rule_following"]["n"]) == (2, 3)
    # Of the first answers only episode 1's follows the rule; episode 0 is the one success after a failure.
    assert (m["rule_following_first"]["k"], m["rule_following_first"]["n"]) == (1, 2)
    assert (m["success_after_failure"]["k"], m["success_after_failure"]["n"]) == (1, 2)
    assert m["first_attempt_any_layout"]["k"] == 1


def test_a_model_that_solves_outside_the_tasks_layout_scores_nothing_but_shows_its_skill(episodes):
    """Under the strict layout right steps without their numbers field fail every attempt; the first
    attempt judged in any layout shows the skill."""
    steps_only = {prompt_of(e): [cards.in_answer_layout(reference_answer(e), "steps_only")] * 5 for e in episodes[:3]}
    strict = replace(TASK, strict_layout=True)
    results = run_episodes(Scripted(steps_only), episodes[:3], strict, progress=False)
    m = compute_metrics(results)
    assert m["success"]["k"] == 0 and m["n_attempts"] == 15
    assert m["verdicts_all_attempts"]["counts"]["unparsable"] == 15 and m["first_attempt_any_layout"]["k"] == 3
    assert results[0].turns[1].user == "fail ; no numbers"


def test_metrics_keep_the_evaluated_models_records(tmp_path, model_dir, episodes_file):
    """An edited or RL model may be deleted once evaluated (keep_models: ladder): its records stay."""
    model = shutil.copytree(model_dir, tmp_path / "edited")
    io.write_json(model / "edit.json", {"name": "direction-top20-tail0", "kind": "direction"})
    io.write_json(model / "provenance.json", {"seed": 3})
    cfg = replace(GREEDY, max_new_tokens=4)
    metrics = evaluate_model(model, episodes_file, TASK, cfg, tmp_path / "out", split="ood", progress=False)
    shutil.rmtree(model)
    stored = io.read_json(tmp_path / "out" / "metrics.json")
    assert (
        stored["model_records"]
        == metrics["model_records"]
        == {
            "provenance.json": {"seed": 3},
            "edit.json": {"name": "direction-top20-tail0", "kind": "direction"},
        }
    )


def test_evaluate_model_writes_metrics_and_is_deterministic(tmp_path, model_dir, episodes_file, episodes):
    cfg = replace(GREEDY, max_new_tokens=12)
    metrics = evaluate_model(model_dir, episodes_file, TASK, cfg, tmp_path / "a", split="ood", progress=False)
    stored = io.read_json(tmp_path / "a" / "metrics.json")
    assert stored["success"] == metrics["success"]
    for key in (
        "split",
        "model",
        "n_episodes",
        "n_items",
        "success",
        "first_attempt_success",
        "success_after_failure",
        "mean_reward_per_attempt",
        "mean_reward_per_episode",
        "verdicts_all_attempts",
        "verdicts_first_attempt",
        "format_error_rate",
        "rule_following",
        "rule_following_first",
        "mean_reply_words",
        "decoding",
        "task",
        "provenance",
        "runtime",
        "first_prompt",
    ):
        assert key in stored, key
    assert stored["split"] == "ood" and stored["n_episodes"] == 6
    first = cards.messages(episodes[0]["hand"], cards.Rule(**episodes[0]["rule"]), 24, "compact")
    assert stored["first_prompt"] == load_model(model_dir)[1].apply_chat_template(
        first, tokenize=False, add_generation_prompt=True
    )
    assert stored["decoding"] == asdict(cfg)
    assert {"git_commit", "packages", "seed"} <= set(stored["provenance"])
    for key in ("ci_low", "ci_high", "stderr"):
        assert key in stored["success"]

    samples = io.read_jsonl(tmp_path / "a" / "samples.jsonl")
    assert [s["uid"] for s in samples] == [r["uid"] for r in io.read_jsonl(episodes_file)]
    turn = samples[0]["turns"][0]
    assert {"user", "reply", "category", "reward", "message", "numbers_follow_rule"} <= set(turn)
    assert samples[0]["attempts"] == len(samples[0]["turns"])

    # The same run again, this time through the script in a fresh process: identical bytes.
    config = {"seed": 0, "task": asdict(TASK), "eval": {"batch_size": 5, "max_new_tokens": 12}}
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate.py"),
            "--config",
            json.dumps(config),
            "--quiet",
            "--model",
            str(model_dir),
            "--episodes",
            str(episodes_file),
            "--split",
            "ood",
            "--out",
            str(tmp_path / "b"),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert (tmp_path / "a" / "samples.jsonl").read_bytes() == (tmp_path / "b" / "samples.jsonl").read_bytes()


def test_script_evaluates_several_splits_with_one_load(tmp_path, model_dir, episodes_file):
    """One process, one model load, one output directory per split, same metrics as a single-split run."""
    config = {"seed": 0, "task": asdict(TASK), "eval": {"batch_size": 5, "max_new_tokens": 12}}
    run = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--config", json.dumps(config), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            *run,
            "--model",
            str(model_dir),
            "--episodes",
            str(episodes_file),
            str(episodes_file),
            "--split",
            "id",
            "ood",
            "--out",
            str(tmp_path / "both" / "{split}"),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env=env,
    )
    subprocess.run(
        [
            *run,
            "--model",
            str(model_dir),
            "--episodes",
            str(episodes_file),
            "--split",
            "ood",
            "--out",
            str(tmp_path / "single"),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env=env,
    )
    assert io.read_json(tmp_path / "both" / "id" / "metrics.json")["split"] == "id"
    both = io.read_json(tmp_path / "both" / "ood" / "metrics.json")
    single = io.read_json(tmp_path / "single" / "metrics.json")
    assert both["success"] == single["success"]
    assert (tmp_path / "both" / "ood" / "samples.jsonl").read_bytes() == (
        tmp_path / "single" / "samples.jsonl"
    ).read_bytes()


# --- bad input ------------------------------------------------------------------------------------


def test_check_inputs_names_the_problem(tmp_path, model_dir, episodes_file):
    with pytest.raises(ValueError, match="unknown split 'test'"):
        check_inputs(model_dir, episodes_file, "test")
    with pytest.raises(FileNotFoundError, match=r"episodes file .*missing.jsonl does not exist"):
        check_inputs(model_dir, tmp_path / "missing.jsonl", "ood")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match=r"empty.jsonl holds no episodes"):
        check_inputs(model_dir, tmp_path / "empty.jsonl", "ood")

    for missing, message in (("model.safetensors", "no weights"), ("tokenizer.json", "no tokenizer")):
        broken = tmp_path / f"no-{missing}"
        broken.mkdir()
        for f in model_dir.iterdir():
            if f.name != missing:
                (broken / f.name).write_bytes(f.read_bytes())
        with pytest.raises(ModelDirError, match=f"{broken}.*{message}"):
            check_inputs(broken, episodes_file, "ood")
    assert len(check_inputs(model_dir, episodes_file, "ood")) == 6


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--split": "test"}, "invalid choice: 'test'"),
        ({"--episodes": "nowhere/eval_ood.jsonl"}, "episodes file nowhere/eval_ood.jsonl does not exist"),
        ({"--model": "no-model"}, "model directory .*no-model does not exist"),
        ({"--config": '{"seed": 0, "task": {}, "evaluate": {}}'}, "unknown: \\['evaluate'\\]"),
        (
            {"--config": '{"seed": 0, "task": {}, "eval": {"batch": 4}}'},
            "eval: unknown key\\(s\\) \\['batch'\\]",
        ),
    ],
)
def test_script_rejects_bad_input_before_loading(tmp_path, change, message, episodes_file):
    args = {
        "--config": '{"seed": 0, "task": {}}',
        "--model": str(tmp_path),
        "--episodes": str(episodes_file),
        "--split": "ood",
        "--out": str(tmp_path / "out"),
        **change,
    }
    if args["--model"] == "no-model":
        args["--model"] = str(tmp_path / "no-model")
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate.py")] + [x for kv in args.items() for x in kv]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert re.search(message, done.stderr), done.stderr
    assert not (tmp_path / "out").exists()


def test_eval_config_validation():
    with pytest.raises(ValueError, match="samples > 1 needs temperature > 0"):
        EvalConfig(samples=4)
    with pytest.raises(ValueError, match="backend must be one of"):
        EvalConfig(backend="tgi")
    assert EvalConfig(samples=4, temperature=0.7).samples == 4


def test_vllm_without_vllm_is_a_clear_error():
    if importlib.util.find_spec("vllm"):
        pytest.skip("vllm is installed")
    with pytest.raises(RuntimeError, match="vllm is not installed"):
        VLLMBackend("any", EvalConfig(backend="vllm"))


# --- the SFT curve ------------------------------------------------------------------------------


def test_sft_curve_table_and_plot(tmp_path, episodes):
    entries: dict = {}
    for split in ("id", "ood"):
        for step, solved in ((0, 0), (100, 2), (200, 1)):
            script = {prompt_of(r): [reference_answer(r) if i < solved else ""] * 5 for i, r in enumerate(episodes[:4])}
            results = run_episodes(Scripted(script), episodes[:4], TASK, progress=False)
            path = tmp_path / split / f"{step}.json"
            io.write_json(path, {"split": split, **compute_metrics(results)})
            entries.setdefault(split, []).append(parse_entry(f"{step}={path}"))
    rows = curve_rows(entries)
    write_curve_csv(rows, tmp_path / "sft_curve.csv")
    written = plot_curve(rows, tmp_path / "sft_curve.png")

    with open(tmp_path / "sft_curve.csv") as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == COLUMNS
    assert [(r["split"], r["step"], r["success"]) for r in table][:3] == [
        ("id", "0", "0.0"),
        ("id", "100", "0.5"),
        ("id", "200", "0.25"),
    ]
    assert [p.name for p in written] == ["sft_curve.png", "sft_curve.pdf"]
    assert all(p.stat().st_size > 1000 for p in written)

    with pytest.raises(ValueError, match="holds split 'ood' but was given as 'id'"):
        curve_rows({"id": [(0, tmp_path / "ood" / "0.json")]})
    with pytest.raises(ValueError, match="STEP=PATH"):
        parse_entry("base=metrics.json")
