"""A rehearsal of each paper experiment on a CPU: the whole workflow (datasets, SFT ladder, evaluation, PPO,
spectra, restoration, claims) through the paper's own config, with sizes and counts shrunk by an overlay
in tests/rehearsal/ and nothing else changed.

The base model is a tiny random-weight model of the paper model's own class (Qwen2ForCausalLM;
MllamaForConditionalGeneration with its vision tower and cross-attention layers), saved in bfloat16, with
a byte-level BPE tokenizer trained here on the game's texts and the model family's chat template, so the
code paths of a real checkpoint run: chat template, BPE, `task.style: paper`, bfloat16, DeepSpeed, SFT in
two processes under `accelerate launch`, and a vision-language checkpoint used for text only. A few
seconds of training teach it to reply with one JSON answer, as an instruct model replies in the format it
is shown, so that the evaluation's replies reach the paper-style parser and verifier.
"""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import tiny_mllama_config

from sftrl import cards, io
from sftrl.cards.reference import reference_feedback
from sftrl.restoration.spec import parse_edits

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ROOT / "tests" / "rehearsal"

# The pre-tokenizer split of each family's byte-level BPE (Qwen2's writes digits one by one, Llama 3's in
# groups of up to three).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2.5-Instruct's ChatML, default system turn included (without its tool-calling branches).
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + QWEN_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# The published checkpoints' sampling (generation_config.json), which the experiments' decoding uses.
QWEN_SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
LLAMA_SAMPLING = {"do_sample": True, "temperature": 0.6, "top_p": 0.9}
# Llama 3's header format, as Llama-3.2-Vision-Instruct renders a text-only conversation.
LLAMA_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class Paper:
    """One paper experiment: its config, the class of its model, and its chat template's markers."""

    experiment: str
    architecture: str
    markers: tuple[str, ...]  # what every templated prompt holds


PAPERS = {
    "qwen2.5-7b": Paper("qwen2.5-7b", "Qwen2ForCausalLM", ("<|im_start|>user\n", "<|im_start|>assistant\n")),
    "llama3.2-11b-vision": Paper(
        "llama3.2-11b-vision",
        "MllamaForConditionalGeneration",
        ("<|begin_of_text|>", "<|start_header_id|>user<|end_header_id|>\n\n"),
    ),
}


# The one answer the base is taught (the game's reference answer for one OOD hand).
TAUGHT = cards.answer((7, 5, 11, 2), cards.RULES["ood"], "(7-5)*11+2", 24, "paper")


def game_records() -> list[dict]:
    """Episode records of both rules, from a seed the rehearsal's own sets do not use."""
    from sftrl import data
    from sftrl.config import DataConfig, EvalDataConfig, SftDataConfig, TaskConfig

    sizes = DataConfig(sft=SftDataConfig(hands=60), eval=EvalDataConfig(id=234, id_unseen=234, ood=234))
    sets = data.build_datasets(7, TaskConfig(style="paper"), sizes)
    return [r for name in ("sft", "eval_id", "eval_ood") for r in sets[name]]


def game_texts(records: list[dict]) -> list[str]:
    """Prompts, reference answers and feedback of `task.style: paper`, as the workflow will write them."""
    from sftrl.sft import vocabulary_texts

    return list(vocabulary_texts(records, "paper"))


def bpe(texts: list[str], split: str, specials: list[str]):
    """A byte-level BPE trained on `texts`, with the pre-tokenizer and decoder of the Qwen2/Llama 3 kind."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def teach(model, tokenizer, records: list[dict], seed: int = 0, steps: int = 400) -> None:
    """Train the model until it replies to a game prompt with TAUGHT (about 150 steps of 4 prompts).

    The prompts are left-padded with positions counting real tokens, as the evaluation feeds them.
    """
    import torch

    rows = []
    for record in records:
        conversation = cards.messages(tuple(record["hand"]), cards.Rule(**record["rule"]), 24, "paper")
        prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*conversation, {"role": "assistant", "content": TAUGHT}], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        rows.append((ids, len(tokenizer(prompt, add_special_tokens=False)["input_ids"])))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, 4)
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, prompt_length) in enumerate(batch):
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            mask[i, width - len(ids) :] = 1
            labels[i, width - len(ids) + prompt_length :] = torch.tensor(ids[prompt_length:])
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        loss = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.01:
            break
    model.eval()


def save_checkpoint(model, tokenizer, generation, records: list[dict], path: Path) -> Path:
    """Teach, then save in bfloat16 as a released checkpoint is."""
    import torch

    teach(model, tokenizer, records)
    model.to(torch.bfloat16).generation_config = generation
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def qwen_checkpoint(path: Path, records: list[dict]) -> Path:
    """A tiny Qwen2ForCausalLM laid out as Qwen2.5-7B-Instruct (untied head, grouped KV heads, ChatML)."""
    import torch
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    backend = bpe([*game_texts(records), QWEN_SYSTEM], QWEN_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN_TEMPLATE
    end, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])  # type: ignore[misc] # (a list in, a list out)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=end,
        pad_token_id=pad,
    )
    torch.manual_seed(0)
    generation = GenerationConfig(eos_token_id=[end, pad], pad_token_id=pad, bos_token_id=None, **QWEN_SAMPLING)
    return save_checkpoint(Qwen2ForCausalLM(config), tokenizer, generation, records, path)


def llama_vision_checkpoint(path: Path, records: list[dict]) -> Path:
    """A tiny MllamaForConditionalGeneration laid out as Llama-3.2-11B-Vision-Instruct: a vision tower,
    cross-attention layers among the decoder layers, `<|image|>` the token after the text vocabulary,
    a tokenizer that prepends `<|begin_of_text|>`, Llama 3's header template."""
    import torch
    from tokenizers import processors
    from transformers import GenerationConfig, MllamaForConditionalGeneration, PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    specials.append("<|finetune_right_pad_id|>")
    backend = bpe([*game_texts(records), "system user assistant"], LLAMA_SPLIT, specials)
    vocab_size = backend.get_vocab_size()
    backend.add_special_tokens(["<|image|>"])
    bos = backend.token_to_id("<|begin_of_text|>")
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = LLAMA_TEMPLATE
    end, eot, pad = tokenizer.convert_tokens_to_ids(["<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"])  # type: ignore[misc]
    config = tiny_mllama_config(
        vocab_size,
        bos,
        end,
        pad,
        vision_layers=2,
        text_layers=4,
        intermediate_size=128,
        max_positions=2048,
        image_token_index=vocab_size,
    )
    torch.manual_seed(0)
    generation = GenerationConfig(bos_token_id=bos, eos_token_id=[end, eot], pad_token_id=pad, **LLAMA_SAMPLING)
    return save_checkpoint(MllamaForConditionalGeneration(config), tokenizer, generation, records, path)


BUILDERS = {"qwen2.5-7b": qwen_checkpoint, "llama3.2-11b-vision": llama_vision_checkpoint}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, one_thread) -> dict[str, Path]:
    """The tiny base of each paper experiment, built once."""
    root = tmp_path_factory.mktemp("checkpoints")
    records = game_records()
    return {name: build(root / name, records) for name, build in BUILDERS.items()}


@dataclass(frozen=True)
class Rehearsal:
    paper: Paper
    base: Path
    results: Path
    config: dict  # the experiment's config as the run merged it (without config.yaml's defaults)
    output: str  # what Snakemake printed

    @property
    def rl_models(self) -> tuple[str, str]:
        """The PPO run's final policy and the policy that plays it (rl.analysed_update)."""
        return "rl-ppo-from2-s0", f"rl-ppo-from2-s0-u{self.config['rl']['analysed_update']}"

    @property
    def processes(self) -> int:
        return self.config["resources"]["sft"]["processes"]


@pytest.fixture(scope="module", params=list(PAPERS))
def rehearsal(request, checkpoints, tmp_path_factory) -> Rehearsal:
    """One paper experiment through Snakemake's default target, shrunk by its overlay."""
    paper = PAPERS[request.param]
    work = tmp_path_factory.mktemp(paper.experiment)
    source = work / "source.yaml"
    source.write_text(yaml.safe_dump({"model": {"source": str(checkpoints[paper.experiment])}}))
    configs = [ROOT / "experiments" / f"{paper.experiment}.yaml", OVERLAYS / f"{paper.experiment}.yaml", source]
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(work),
            "--cores",
            "2",
            "--show-failed-logs",
            "--configfile",
            *map(str, configs),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    print(f"\nrehearsal of {paper.experiment}: {time.perf_counter() - started:.0f} s")
    config: dict = {}
    for path in configs:
        config = merged(config, yaml.safe_load(path.read_text()))
    return Rehearsal(paper, checkpoints[paper.experiment], work / "results" / config["exp"], config, result.stdout)


def merged(base: dict, update: dict) -> dict:
    """Config files merged as Snakemake merges them: nested sections key by key."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tensors(model: Path) -> dict[str, str]:
    """Tensor name -> safetensors dtype of a model directory."""
    from sftrl.spectral.weights import ModelWeights

    return {name: info.dtype for name, info in ModelWeights(model).infos.items()}


def test_sft_ran_under_deepspeed_in_its_processes(rehearsal):
    """Each rank wrote its RNG state and its ZeRO optimizer shard, and the trainer counted an epoch in
    steps of every process's batches: two processes (Qwen), or one under torchrun (Llama), as one GPU."""
    sft, processes = rehearsal.config["sft"], rehearsal.processes
    assert sft["deepspeed"] and sft["bf16"]
    checkpoint = rehearsal.results / "work" / "sft" / f"checkpoint-{sft['max_steps']}"
    ranks = {f"rng_state_{r}.pth" for r in range(processes)} if processes > 1 else {"rng_state.pth"}
    assert {p.name for p in checkpoint.glob("rng_state*.pth")} == ranks
    shards = {p.name for p in checkpoint.glob("global_step*/*optim_states.pt")}
    assert all(any(f"rank_{r}" in name for name in shards) for r in range(processes))
    assert not any(f"rank_{processes}" in name for name in shards)
    examples = len(io.read_jsonl(rehearsal.results / "data" / "sft.jsonl"))
    steps_per_epoch = math.ceil(math.ceil(examples / processes) / sft["per_device_batch_size"])
    history = io.read_jsonl(rehearsal.results / "sft" / "history.jsonl")
    assert history[0]["step"] == 1 and history[0]["epoch"] == pytest.approx(1 / steps_per_epoch, abs=1e-3)
    assert {"eval_id_unseen_loss", "eval_ood_loss"} <= set(history[-1])


def test_every_model_keeps_the_base_class_layout_and_bfloat16(rehearsal):
    """SFT, PPO and restoration write the base's class and tensor names, all in bfloat16: a vision-language
    base keeps its vision tower, untouched by training on text."""
    base = tensors(rehearsal.base)
    models = rehearsal.results / "models"
    written = [models / "sft-1", models / "sft-2", *(models / m for m in rehearsal.rl_models)]
    written += [p.parent for p in models.glob("edits/*/*/edit.json")]
    assert len(written) == 4 + 6
    for model in written:
        config = json.loads((model / "config.json").read_text())
        assert config["architectures"] == [rehearsal.paper.architecture], model
        assert tensors(model) == base, model
        assert set(base.values()) == {"BF16"}
    if "vision_config" in json.loads((rehearsal.base / "config.json").read_text()):
        import torch

        from sftrl.spectral.weights import ModelWeights

        name = "vision_model.patch_embedding.weight"
        base_tower = ModelWeights(rehearsal.base).get(name)
        for model in written:
            edit = model / "edit.json"
            # the authors' edits passed every tensor through float16 (restore.round_trip), the tower too
            through = json.loads(edit.read_text())["edit"]["round_trip"] if edit.is_file() else "none"
            expected = base_tower.to(torch.float16).to(torch.bfloat16) if through == "float16" else base_tower
            assert ModelWeights(model).get(name).equal(expected), model


def test_evaluation_prompts_carry_the_chat_template(rehearsal):
    """What the models read is the paper's prompt in the checkpoint's chat template, its first marker once."""
    for model in ("base", "sft-2", *rehearsal.rl_models):
        for split in ("id", "id_unseen", "ood"):
            metrics = io.read_json(rehearsal.results / "eval" / model / split / "metrics.json")
            prompt = metrics["first_prompt"]
            assert all(marker in prompt for marker in rehearsal.paper.markers), (model, split, prompt[:200])
            assert prompt.count(rehearsal.paper.markers[0]) == 1
            assert "[Task Description]" in prompt


def test_paper_answers_are_parsed(rehearsal):
    """First replies are the taught JSON answer, read field by field: the stated numbers are checked
    against the rule and the formula is judged; failed attempts get the paper's feedback turn."""
    for model in ("base", "sft-2", *rehearsal.rl_models):
        samples = [
            sample
            for split in ("id", "ood")
            for sample in io.read_jsonl(rehearsal.results / "eval" / model / split / "samples.jsonl")
        ]
        first = [sample["turns"][0] for sample in samples]
        assert all(cards.parse(turn["reply"]).format == "json" for turn in first), model
        assert all(turn["numbers_follow_rule"] is not None for turn in first), model
        assert all(turn["category"] in ("correct", "wrong_numbers") for turn in first), model
        retried = [sample["turns"][1] for sample in samples if len(sample["turns"]) > 1]
        assert retried and all(turn["user"].startswith("You failed this trial because") for turn in retried)
        # task.feedback reference: the reference verifier's words, e.g. "you used invalid numbers: [11]."
        failed = [(s, s["turns"][0]) for s in samples if len(s["turns"]) > 1]
        for sample, turn in failed:
            rule = cards.Rule(**sample["rule"])
            expected = reference_feedback(turn["reply"], sample["hand"], rule, sample["target"])
            assert sample["turns"][1]["user"] == expected


def test_rl_restoration_and_claims(rehearsal):
    """PPO ran its updates under DeepSpeed in its processes (each wrote its ZeRO optimizer shard) as the
    authors ran it; its policy after rl.analysed_update plays the RL model; every edit of the grid was made
    and evaluated; the claims were judged, beside the paper's stage table."""
    results = rehearsal.results
    ppo, processes = rehearsal.config["rl"]["ppo"], rehearsal.config["resources"]["rl"]["processes"]
    final, analysed = rehearsal.rl_models
    rl = io.read_jsonl(results / "rl" / final / "history.jsonl")
    assert len(rl) == ppo["updates"] and ppo["deepspeed"]
    assert max(row["mean_turns"] for row in rl) <= 5 + 1  # the authors' sixth reply after five failures
    checkpoint = results / "work" / "rl" / final / f"checkpoint-{ppo['updates']}"
    shards = {p.name for p in checkpoint.glob("deepspeed/*optim_states.pt")}
    assert all(any(f"rank_{r}" in name for name in shards) for r in range(processes))
    assert io.read_json(results / "models" / analysed / "provenance.json")["update"] == 1
    roles = io.read_json(results / "tables" / "roles.json")
    assert roles["rl_from_end"] == [analysed] and roles["peak_rule"] == "all_episodes"
    with open(results / "tables" / "restoration.csv") as handle:
        rows = list(csv.DictReader(handle))
    pairs = rehearsal.config["restore"]["pairs"]
    assert {row["edit"] for row in rows} == {spec.name for pair in pairs for spec in parse_edits(pair["edits"])}
    assert {(row["source_role"], row["target_role"]) for row in rows} == {
        ("sft_peak", "sft_end"),
        ("sft_end", analysed),
        ("base", "sft_end"),
    }
    assert len(rows) == 6 * 3  # each edit on each split
    edit = io.read_json(next((results / "models" / "edits").glob("sft_end__*/*topk40*/edit.json")))["edit"]
    assert (edit["covering"], edit["round_trip"]) == ("copy", "float16")
    with open(results / "tables" / "rl_curve.csv") as handle:
        curve = list(csv.DictReader(handle))
    assert sorted({int(row["update"]) for row in curve}) == [0, 1, 2]
    claims = (results / "report" / "claims.md").read_text()
    assert claims.startswith(f"# Claims: experiment {rehearsal.config['exp']}")
    assert all(f"## {finding}: " in claims for finding in ("F1", "F2", "F3", "F4"))
    assert "## Reproduces the paper? (" in claims and "| OOD | RL from the end |" in claims
    assert "## The OOD peak" in claims and "(plays sft_peak)" in claims
    reproduction = io.read_json(results / "report" / "claims.json")["reproduction"]
    assert reproduction["paper_table"] == rehearsal.paper.experiment and len(reproduction["rows"]) == 6


def test_the_dry_run_says_which_options_are_the_authors_and_which_checks_one_seed_leaves_open(rehearsal):
    expected = {"qwen2.5-7b": "17 of 18", "llama3.2-11b-vision": "16 of 17"}[rehearsal.paper.experiment]
    assert (
        f"Fidelity to the authors' runs (docs/fidelity.md): {expected} options as the authors ran them"
        in rehearsal.output
    )
    assert (
        "rl.seeds has 1 seed: F1.rl_raises.ppo, F1.rl_most.ppo, F1.rl_late.ppo will be inconclusive" in rehearsal.output
    )
    assert "  corrected  data.sft.file = null" in rehearsal.output
