"""The authors' Qwen SFT format (sftrl.sft_format, sft.prompt_format llama3_headers_as_text), token for token,
on a tiny Qwen2 model with a byte-level BPE and Qwen's ChatML special tokens."""

from pathlib import Path

import pytest
from test_rehearsal import QWEN_SPLIT, QWEN_SYSTEM, QWEN_TEMPLATE, bpe

from sftrl import cards, data, sft
from sftrl.sft_format import check_prompt_format, headers_as_text, tokenizer_files_tokens, tokenizer_problem

HAND, RULE = (7, 13, 3, 4), cards.RULES["id"]


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """A tiny Qwen2ForCausalLM and its tokenizer, saved: ChatML special tokens, Qwen's template."""
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    example = data.example("x", HAND, RULE, 24, cards.solutions(HAND, RULE, 24)[0], "paper", "authors")
    texts = [example["prompt"][0]["content"], example["completion"][0]["content"], QWEN_SYSTEM, "<|eot_id|>\\n"]
    backend = bpe(texts * 3, QWEN_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = QWEN_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("qwen") / "base"
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, tokenizer, example


def test_the_example_is_the_authors_string_token_for_token(qwen):
    _, tokenizer, example = qwen
    prompt, answer = example["prompt"][0]["content"], example["completion"][0]["content"]
    # data_qwen.py: f"{START_HEADER_TOKEN}{role}{END_HEADER_TOKEN}\\n\\n{content}{EOT_TOKEN}\\n..." (literal \n)
    user = (
        "<|start_header_id|>user<|end_header_id|>\\n\\n"
        + prompt
        + "<|eot_id|>\\n<|start_header_id|>assistant<|end_header_id|>\\n\\n"
    )
    reply = answer + "<|eot_id|>\\n"
    expected = (
        tokenizer(user, add_special_tokens=False)["input_ids"] + tokenizer(reply, add_special_tokens=False)["input_ids"]
    )
    got = headers_as_text(tokenizer, example["prompt"], example["completion"])
    assert got["input_ids"] == expected
    assert tokenizer.decode(got["input_ids"]) == user + reply
    n_prompt = len(tokenizer(user, add_special_tokens=False)["input_ids"])
    assert got["completion_mask"] == [0] * n_prompt + [1] * (len(expected) - n_prompt)
    specials = set(tokenizer.all_special_ids)
    assert not specials & set(got["input_ids"])  # no ChatML, no end-of-turn token: all of it plain text
    assert QWEN_SYSTEM not in tokenizer.decode(got["input_ids"])  # no system turn


def test_the_trainer_trains_on_those_ids_and_only_on_the_answer(qwen, tmp_path):
    path, _, example = qwen
    from sftrl.modeling import load_model

    model, tokenizer = load_model(path)
    cfg = sft.SftConfig(
        prompt_format="llama3_headers_as_text",
        max_steps=1,
        save_every=1,
        extra_steps=(),
        max_length=1024,
        per_device_batch_size=1,
    )
    trainer = sft.SftTrainer(
        schedule=cfg.lr_scheduler_type,
        model=model,
        args=sft.trainer_config(cfg, tmp_path),
        train_dataset=sft.training_dataset([example], tokenizer, cfg.prompt_format),
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    expected = headers_as_text(tokenizer, example["prompt"], example["completion"])
    assert row["input_ids"] == expected["input_ids"]
    assert [label != -100 for label in row["labels"]] == [bool(m) for m in expected["completion_mask"]]
    templated = sft.training_dataset([example], tokenizer, "chat_template")[0]  # TRL renders it with ChatML
    assert templated["prompt"] == example["prompt"]


def test_the_format_is_refused_where_it_cannot_apply(qwen, tmp_path):
    path, _tokenizer, _ = qwen
    check_prompt_format("llama3_headers_as_text", "paper", path)  # Qwen's tokenizer: fine
    check_prompt_format("llama3_headers_as_text", "paper", None)  # a hub id: checked by the job
    assert tokenizer_files_tokens(path) is not None and tokenizer_files_tokens(tmp_path) is None
    with pytest.raises(ValueError, match=r"task.style is 'compact'"):
        check_prompt_format("llama3_headers_as_text", "compact", path)
    with pytest.raises(ValueError, match=r"sft.prompt_format 'alpaca'"):
        check_prompt_format("alpaca", "paper", path)
    embedded = Path(__file__).resolve().parents[1] / "resources" / "tiny-base"
    with pytest.raises(ValueError, match="has no <\\|im_start\\|> token: it is not Qwen's"):
        check_prompt_format("llama3_headers_as_text", "paper", embedded)
    assert "as special tokens" in tokenizer_problem(["<|eot_id|>", "<|im_start|>"], ["<|im_start|>"])
