"""Two models read the same prompts: their pooled final-layer states and next-token distributions.

Features as the revised paper takes them: each prompt in the model's own chat template, cut at the end of
the user turn; the final-layer hidden state (after the final norm) at the last K positions of that turn,
mean-pooled to one vector per prompt; the next-token logits at the same positions pooled the same way.
The two models run batch by batch on the same prompts, so memory holds one batch of activations (and the
LM head only ever sees K positions); what is kept per prompt is one vector per model and the two
next-token metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sftrl.families import text_config

TOKENIZER_VOCAB_FILES = ("vocab.json", "merges.txt", "tokenizer.model", "vocab.txt")


class IncomparableModels(ValueError):
    """Two models whose features cannot be compared: different tokenizers or hidden sizes."""


@dataclass(frozen=True)
class FeatureConfig:
    """How features are taken (the config's `representations` section, without what only the summary uses)."""

    positions: int = 8  # K: the last K positions of the user turn
    top_k: int = 10
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("positions", "top_k", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"representations.{name} must be >= 1, got {getattr(self, name)}")


def model_shape(model_dir: str | Path) -> dict[str, Any]:
    """What a comparison needs to be equal, read from the files alone (no weights, no transformers)."""
    model_dir = Path(model_dir)
    config = text_config(json.loads((model_dir / "config.json").read_text()))
    digest = hashlib.sha256()
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        tokenizer = json.loads(tokenizer_json.read_text())
        vocab = {"model": tokenizer.get("model"), "added": tokenizer.get("added_tokens")}
        digest.update(json.dumps(vocab, sort_keys=True).encode())
    for name in TOKENIZER_VOCAB_FILES:
        if (model_dir / name).is_file():
            digest.update((model_dir / name).read_bytes())
    return {
        "hidden_size": config.get("hidden_size"),
        "vocab_size": config.get("vocab_size"),
        "tokenizer": digest.hexdigest(),
    }


def check_comparable(a: tuple[str, Any], b: tuple[str, Any]) -> None:
    """Refuse a pair whose shapes (`model_shape`, or the same keys from loaded models) differ, naming both."""
    (name_a, shape_a), (name_b, shape_b) = a, b
    differences = [
        f"{what}: {shape_a[key]} vs {shape_b[key]}"
        for key, what in (("hidden_size", "hidden size"), ("vocab_size", "vocabulary size"), ("tokenizer", "tokenizer"))
        if shape_a.get(key) != shape_b.get(key)
    ]
    if differences:
        raise IncomparableModels(
            f"models {name_a} and {name_b} cannot be compared: {'; '.join(differences)}. Cosine, MMD² and "
            "Fréchet distance need one hidden size, and the next-token metrics one tokenizer"
        )


def loaded_shape(model, tokenizer) -> dict[str, Any]:
    """`model_shape` of a loaded model: the same keys, the tokenizer by its vocabulary."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    vocab = json.dumps(sorted(tokenizer.get_vocab().items())).encode()
    return {
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "tokenizer": hashlib.sha256(vocab).hexdigest(),
    }


def user_turn_text(tokenizer, conversation: Sequence[dict]) -> str:
    """The prompt in the model's chat template, cut where the last user turn's text ends (no end-of-turn
    marker, no generation prompt): the states at its last positions are the model's reading of the task."""
    text = tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=False)
    content = conversation[-1]["content"].strip()  # templates such as Llama 3's trim each message
    end = text.rfind(content)
    if end < 0:
        raise ValueError("the chat template does not hold the user's text; cannot find the end of the user turn")
    return text[: end + len(content)]


def _pooled(model, input_ids, attention_mask, positions: int):
    """Mean over the last `positions` real tokens of the final-layer state and of the logits there."""
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)  # left padding: real tokens count from 0
    states = (
        model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        .last_hidden_state[:, -positions:]
        .float()
    )
    weights = attention_mask[:, -positions:].to(states.dtype).unsqueeze(-1)
    count = weights.sum(1)
    head = model.get_output_embeddings()
    logits = head(states.to(head.weight.dtype)).float()
    return (states * weights).sum(1) / count, (logits * weights).sum(1) / count


def next_token_metrics(logits_a, logits_b, top_k: int):
    """Per prompt: Jensen–Shannon divergence in bits of softmax(logits) at T = 1, and the overlap share of
    the two top-k token sets."""
    import torch

    log_p, log_q = torch.log_softmax(logits_a.double(), -1), torch.log_softmax(logits_b.double(), -1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), 0) - math.log(2)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    js = (0.5 * (kl_pm + kl_qm) / math.log(2)).clamp(min=0)
    k = min(top_k, logits_a.shape[-1])
    top_a, top_b = logits_a.topk(k, -1).indices, logits_b.topk(k, -1).indices
    overlap = (top_a.unsqueeze(2) == top_b.unsqueeze(1)).any(2).double().mean(-1)
    return js, overlap


def compare_pair(
    models: tuple[Any, Any],
    tokenizers: tuple[Any, Any],
    conversations: Sequence[Sequence[dict]],
    cfg: FeatureConfig,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Both models on every conversation's first prompt, in batches of similar length.

    Returns per prompt (in the given order): `a` and `b`, the pooled hidden states (n × hidden, float32);
    `js` and `topk`, the next-token metrics of b against a.
    """
    import torch

    texts = [[user_turn_text(tok, c) for c in conversations] for tok in tokenizers]
    lengths = [len(ids) for ids in tokenizers[0](texts[0], add_special_tokens=False)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    out: dict[str, list] = {"a": [], "b": [], "js": [], "topk": []}
    with torch.inference_mode():
        for start in range(0, len(order), cfg.batch_size):
            chunk = order[start : start + cfg.batch_size]
            pooled = []
            for model, tokenizer, model_texts in zip(models, tokenizers, texts, strict=True):
                batch = tokenizer(
                    [model_texts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(model.device)
                hidden, logits = _pooled(model, batch["input_ids"], batch["attention_mask"], cfg.positions)
                pooled.append((hidden.cpu(), logits.cpu()))
            (hidden_a, logits_a), (hidden_b, logits_b) = pooled
            js, overlap = next_token_metrics(logits_a, logits_b, cfg.top_k)
            for key, value in (("a", hidden_a), ("b", hidden_b), ("js", js), ("topk", overlap)):
                out[key].append(value.numpy())
            if progress is not None:
                progress(min(start + cfg.batch_size, len(order)), len(order))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return {
        key: np.concatenate(parts)[inverse].astype(np.float32 if key in ("a", "b") else np.float64)
        for key, parts in out.items()
    }


def pair_features(
    names: tuple[str, str],
    model_refs: tuple[str | Path, str | Path],
    prompts: dict[str, tuple[list[str], list[list[dict]]]],
    cfg: FeatureConfig,
    dtype: str,
    device: str,
    trust_remote_code: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Load both models, refuse an incomparable pair before any forward pass, and compare them on each
    split's prompts: split -> uids and the arrays of `compare_pair`."""
    from sftrl.evaluate.backends import resolve_device
    from sftrl.modeling import load_model

    loaded = [
        load_model(ref, dtype=dtype, device=resolve_device(device), trust_remote_code=trust_remote_code)
        for ref in model_refs
    ]
    check_comparable(*((name, loaded_shape(*pair)) for name, pair in zip(names, loaded, strict=True)))
    for model, _ in loaded:
        model.eval()
    models, tokenizers = (loaded[0][0], loaded[1][0]), (loaded[0][1], loaded[1][1])
    results = {}
    for split, (uids, conversations) in prompts.items():
        report = None if progress is None else (lambda done, total, split=split: progress(split, done, total))
        results[split] = {"uids": np.array(uids), **compare_pair(models, tokenizers, conversations, cfg, report)}
    return results
