"""How an SFT example becomes the token ids it is trained on (`sft.prompt_format`).

- `chat_template` (corrected): the prompt and answer through the model's own chat template, as TRL renders a
  conversation, so SFT trains on the text the model reads at evaluation and in RL.
- `llama3_headers_as_text` (the authors' Qwen SFT, `sft/src/training/data_qwen.py`): Llama 3's header strings
  given to Qwen as plain text, with a literal backslash-n where Llama 3 has a newline and no system turn:
  ``<|start_header_id|>user<|end_header_id|>\\n\\n{prompt}<|eot_id|>\\n<|start_header_id|>assistant<|end_header_id|>\\n\\n``
  then the answer followed by the literal text ``<|eot_id|>\\n`` and no end-of-turn token, each piece tokenized
  on its own without special tokens. Qwen's tokenizer has none of these strings as special tokens, so the model
  reads them as ordinary text; at evaluation and in RL the authors used Qwen's own ChatML template.

Torch-free: the workflow checks the option against the base's tokenizer files at the dry run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

PROMPT_FORMATS = ("chat_template", "llama3_headers_as_text")
LLAMA3_STRINGS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
CHATML_START = "<|im_start|>"  # the special token of Qwen's own chat template
_NEWLINE = "\\n"  # a backslash and an n: the authors wrote "\\n" in their f-strings


def _header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>{_NEWLINE}{_NEWLINE}"


def headers_as_text(tokenizer, prompt: Sequence[dict], completion: Sequence[dict]) -> dict[str, list[int]]:
    """`input_ids` and `completion_mask` (1 on the answer) of one example in the authors' Qwen SFT format.

    A user turn is its header, its text, ``<|eot_id|>\\n`` and the assistant header; an assistant turn is its
    text and ``<|eot_id|>\\n``; each such piece is tokenized alone, as the authors did. Only the completion is
    trained on (the authors' sets are single-turn, where the two agree)."""
    ids: list[int] = []
    mask: list[int] = []
    for number, message in enumerate([*prompt, *completion]):
        if message["role"] == "user":
            text = f"{_header('user')}{message['content']}<|eot_id|>{_NEWLINE}{_header('assistant')}"
        else:
            text = f"{message['content']}<|eot_id|>{_NEWLINE}"
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [int(number >= len(prompt))] * len(piece)
    return {"input_ids": ids, "completion_mask": mask}


def tokenizer_problem(special_tokens: Sequence[str], all_tokens: Sequence[str]) -> str | None:
    """Why the authors' Qwen format cannot apply to a tokenizer, or None: its special tokens must not hold
    the Llama 3 strings (they would be read as real headers, not as text) and must hold Qwen's ChatML start
    (the format is how the authors trained Qwen, whose template the evaluation then uses)."""
    special = [s for s in LLAMA3_STRINGS if s in special_tokens]
    if special:
        return (
            f"its tokenizer has {special} as special tokens, so the text headers would be read as Llama 3's own; "
            "the option reproduces how Qwen's tokenizer read them, as plain text"
        )
    if CHATML_START not in all_tokens:
        return (
            f"its tokenizer has no {CHATML_START} token: it is not Qwen's, whose SFT the authors ran in this "
            "format while evaluating with Qwen's own chat template"
        )
    return None


def tokenizer_files_tokens(model_dir: str | os.PathLike) -> tuple[list[str], list[str]] | None:
    """(special tokens, added tokens) from a model directory's tokenizer files, or None where it has none."""
    directory = Path(model_dir)
    special: list[str] = []
    added: list[str] = []
    found = False
    config = directory / "tokenizer_config.json"
    if config.is_file():
        found = True
        data = json.loads(config.read_text())
        for entry in (data.get("added_tokens_decoder") or {}).values():
            added.append(entry.get("content", ""))
            if entry.get("special"):
                special.append(entry.get("content", ""))
        for key, value in data.items():
            value = value.get("content") if isinstance(value, dict) else value
            if key.endswith("_token") and isinstance(value, str):
                special.append(value)
        special += [t for t in data.get("additional_special_tokens") or [] if isinstance(t, str)]
    backend = directory / "tokenizer.json"
    if backend.is_file():
        found = True
        for entry in json.loads(backend.read_text()).get("added_tokens") or []:
            added.append(entry.get("content", ""))
            if entry.get("special"):
                special.append(entry.get("content", ""))
    return (special, added) if found else None


def check_prompt_format(prompt_format: str, style: str, model_dir: str | os.PathLike | None) -> None:
    """Refuse, before any job, a prompt format that cannot apply: an unknown one, the authors' Qwen format
    with the compact style, or with a base whose tokenizer is not Qwen's (checked where it is on disk)."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"sft.prompt_format {prompt_format!r}: expected one of {list(PROMPT_FORMATS)}")
    if prompt_format == "chat_template":
        return
    if style != "paper":
        raise ValueError(
            f"sft.prompt_format {prompt_format}: the authors' Qwen SFT format wraps the paper's prompt and JSON "
            f"answer; task.style is {style!r}: set sft.prompt_format chat_template or task.style paper"
        )
    tokens = tokenizer_files_tokens(model_dir) if model_dir is not None else None
    problem = tokenizer_problem(*tokens) if tokens else None
    if problem:
        raise ValueError(f"sft.prompt_format {prompt_format} cannot apply to the base model {model_dir}: {problem}")
