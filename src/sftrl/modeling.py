"""Model and tokenizer I/O, and the tiny model the default experiment pretrains on a CPU.

Every model the workflow reads or writes is a plain Hugging Face directory, so the same code serves the
embedded tiny model and a user's Qwen2.5 or Llama checkpoint.

The tiny model is a Llama, not a Qwen2: transformers' AutoTokenizer replaces the tokenizer of any
directory whose config says `qwen2` with its own byte-level BPE pipeline, which would silently mangle
the word-level tokenizer below; for `llama` it loads tokenizer.json as saved.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from sftrl.config import TinyModelConfig
from sftrl.families import family_of
from sftrl.io import atomic_path, write_json

PAD, EOS, UNK = "<pad>", "<|end|>", "<unk>"
ROLE_MARKERS = {role: f"<|{role}|>" for role in ("system", "user", "assistant")}
SPECIAL_TOKENS = [PAD, EOS, UNK, *ROLE_MARKERS.values()]

# Each turn is `<|role|> words <|end|>`; the end marker is also EOS, so generation stops after one turn.
# The prompt rendered with add_generation_prompt is, token for token, a prefix of prompt + completion,
# which TRL's completion-only loss relies on.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|> ' + message['content'] + ' <|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

WEIGHT_FILES = ("*.safetensors", "*.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


class ModelDirError(ValueError):
    """A model directory that cannot be loaded; the message names the directory and what is missing."""


def build_tokenizer(texts: Iterable[str], max_number: int = 200) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over whitespace-separated words, built offline.

    The vocabulary holds the special tokens, every integer in -max_number..max_number (so any
    intermediate value the model may need to write is one token, seen in the texts or not) and every
    word of `texts`, in a fixed order so the same texts always give the same ids.
    """
    vocab: dict[str, int] = {}
    numbers = [str(n) for n in range(max_number + 1)] + [str(-n) for n in range(1, max_number + 1)]
    words = sorted({word for text in texts for word in text.split()})
    for token in [*SPECIAL_TOKENS, *numbers, *words]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    # Split on whitespace only: "8/3" and "-3" stay single words. With no decoder, tokenizers joins
    # decoded words with single spaces, which is exactly the compact style's spelling.
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=list(ROLE_MARKERS.values()),
        clean_up_tokenization_spaces=False,  # would glue " ," and " ." and break the round trip
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, cfg: TinyModelConfig, seed: int) -> LlamaForCausalLM:
    """A freshly initialised Llama causal LM sized to `tokenizer`; the same seed gives the same weights."""
    if cfg.vocab_size is not None and cfg.vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {cfg.vocab_size} is below the tokenizer's {len(tokenizer)} tokens")
    config = LlamaConfig(
        vocab_size=cfg.vocab_size or len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        rms_norm_eps=1e-6,
        attention_bias=cfg.attention_bias,
        mlp_bias=False,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = generation_config(tokenizer)
    return model


def cast_weights(directory: str | os.PathLike, dtype: str) -> None:
    """Rewrite a model directory's floating-point tensors in `dtype`, its config.json saying so: a
    checkpoint trained as float32 master weights, written as the half-precision model it came as."""
    directory = Path(directory)
    target = DTYPES[dtype]
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(file, "pt") as handle:
            metadata = handle.metadata()
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - not a dict
        cast = {name: t.to(target) if t.is_floating_point() else t for name, t in tensors.items()}
        save_file(cast, file, metadata=metadata)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = dtype
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    return GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    path: str | os.PathLike,
    provenance: dict | None = None,
) -> None:
    """A complete Hugging Face directory (safetensors, configs, tokenizer, chat template), written atomically,
    with `provenance` (what made the model) as provenance.json where given."""
    with atomic_path(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if provenance is not None:
            write_json(tmp / "provenance.json", provenance)
        check_model_dir(tmp)


def check_model_dir(path: str | os.PathLike) -> Path:
    """Fail early, naming the directory and every missing part, instead of deep inside from_pretrained."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"model directory {path} does not exist or is not a directory")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("no config.json")
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_FILES):
        missing.append("no weights (*.safetensors, *.bin or a weight index)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"no tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    if missing:
        raise ModelDirError(f"model directory {path} is incomplete: {'; '.join(missing)}")
    return path


def is_hub_id(name: str) -> bool:
    """`org/name` or `name` that is not a local path: handed to from_pretrained as a hub id."""
    return not Path(name).expanduser().exists() and not name.startswith(("/", ".", "~")) and name.count("/") <= 1


def freeze_beyond_text(model: PreTrainedModel) -> list[str]:
    """Stop gradients to the parameters a text-only forward never uses, and return their names.

    They get no gradient anyway; frozen, they stay out of the optimizer (no Adam state, no ZeRO partition)
    and out of DDP's gradient bookkeeping, and every checkpoint keeps the base's values for them.
    """
    beyond = family_of(model.config.to_dict()).beyond_text
    if beyond is None:
        return []
    prefixes = beyond(model.config)
    frozen = []
    for name, param in model.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def _join_zero3_world() -> None:
    """Under DeepSpeed ZeRO-3 the weights are partitioned while they load, over the world size that
    DeepSpeed's own communication layer reports. On GPUs the trainer's arguments have set that layer up;
    on CPU processes they set up torch.distributed (gloo) alone, and ZeRO-3 would count one process and
    refuse the batch size. DeepSpeed joins the existing process group here (a no-op where it has)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        import deepspeed

        deepspeed.init_distributed()


def _keep_used_renamings(model: PreTrainedModel) -> None:
    """Save under the tensor names the checkpoint was loaded from.

    `save_pretrained` reverts the renamings that loading applied to the checkpoint's names. The ordinary
    loading path keeps only the renamings that matched a name; the ZeRO-3 path keeps every one registered
    for the class, and reverting the unused ones too turns Llama 3.2 Vision's `language_model.model.layers.`
    into `language_model.model.model.layers.`: a layout no other stage has. Keep the matched ones only.
    """
    renamings = getattr(model, "_weight_conversions", None)
    if renamings:
        cast(Any, model)._weight_conversions = [renaming for renaming in renamings if renaming.was_used()]


def load_model(
    path: str | os.PathLike,
    dtype: str = "float32",
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer, ready for batched generation (pad token set, left padding).

    A vision-language checkpoint (a family with `beyond_text`, sftrl.families) loads in its own class, the
    vision weights frozen, so that what a stage saves has the layout of what it loaded. Vision-language
    checkpoints loaded as AutoModelForCausalLM would become a text-only class that drops the vision weights
    and names its tensors otherwise (Mllama: MllamaForCausalLM), so SFT and RL would write a layout the base
    does not have, and spectra and restoration could not pair a checkpoint with the base.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    source = str(path)
    if not is_hub_id(source):
        source = str(check_model_dir(Path(source).expanduser()))
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    _join_zero3_world()
    vision = family_of(config.to_dict(), source).vision
    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    model = auto.from_pretrained(
        source, config=config, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, device_map=device
    )
    _keep_used_renamings(model)
    freeze_beyond_text(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def main(argv: list[str] | None = None) -> None:
    """`python -m sftrl.modeling check DIR...`: fail fast, naming what is missing, on a bad model dir."""
    parser = argparse.ArgumentParser(prog="python -m sftrl.modeling", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check that model directories are complete")
    check.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.dirs:
        try:
            check_model_dir(path)
        except ModelDirError as error:
            parser.exit(1, f"{error}\n")
        print(f"{path}: complete model directory")


if __name__ == "__main__":
    main()
