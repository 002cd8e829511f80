"""Batched decoding that keeps each conversation's KV cache from one turn to the next.

In a multi-turn episode every prompt is the previous prompt, the previous reply and a short feedback
message. Re-encoding the whole conversation each turn makes the prefill grow with the episode and dominate
the cost; here each row keeps the keys and values of the tokens it has already seen (a `Prefix`), and a turn
only encodes what is new. Rows are laid out as

    [holes | reused cache of row i | holes | new tokens of row i] + generated tokens

with the holes masked out and position ids counting only real tokens, so every row computes what it would
compute alone. A row's cache is taken out the step it finishes, and finished rows leave the batch once they
are an eighth of it, so the batch computes few dead rows without copying the cache every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from sftrl.evaluate.engine import Sampling

GROUPED_SDPA = "sftrl_grouped_sdpa"


def grouped_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """SDPA that lets the kernel broadcast shared KV heads (`enable_gqa`).

    With a padding mask, transformers' SDPA path regroups or repeats the KV heads of a grouped-query model on
    every step, copying the whole cache; with holes in every row's mask that copy costs as much as the
    matmuls of a tiny model. Same inputs, same outputs, same mask function.
    """
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=bool(causal and attention_mask is None and query.shape[2] > 1),
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(GROUPED_SDPA, grouped_sdpa)
AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)


@dataclass
class Prefix:
    """The tokens one row has been through and their per-layer (key, value), each [heads, tokens, dim]
    (None for a layer that text skips)."""

    tokens: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor] | None]


def reusable(prefix: Prefix | None, tokens: Sequence[int]) -> int:
    """How many leading tokens of `tokens` the prefix already covers; at least one token is left to encode,
    because the next token is predicted from the last one's logits."""
    if prefix is None:
        return 0
    limit = min(len(prefix.tokens), len(tokens) - 1)
    n = 0
    while n < limit and prefix.tokens[n] == tokens[n]:
        n += 1
    return n


class IncrementalDecoder:
    """Greedy or sampled decoding of a batch of prompts, each optionally continuing a `Prefix`; the logits
    pass through `generate`'s own processors in its order (repetition penalty, temperature, top-k, top-p)."""

    def __init__(self, model, eos_ids: Sequence[int], pad_id: int, sampling: Sampling):
        self.model = model
        self.eos = torch.tensor(sorted(set(eos_ids)), device=model.device)
        self.pad_id = pad_id
        self.sampling = sampling
        self.warpers = LogitsProcessorList()
        if not sampling.greedy:
            self.warpers.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_k > 0:
                self.warpers.append(TopKLogitsWarper(sampling.top_k))
            if sampling.top_p < 1:
                self.warpers.append(TopPLogitsWarper(sampling.top_p))
        self.greedy = sampling.greedy
        self.penalised = sampling.repetition_penalty != 1.0

    def decode(
        self, prompts: Sequence[Sequence[int]], prefixes: Sequence[Prefix | None], max_new_tokens: int
    ) -> tuple[list[list[int]], list[Prefix]]:
        """The generated ids of every row (up to and including its eos) and the prefix each row ends with."""
        config = self.model.config.get_text_config(decoder=True)
        stock = self.model.config._attn_implementation
        if stock != "sdpa" or config.num_key_value_heads == config.num_attention_heads:
            return self._decode(prompts, prefixes, max_new_tokens)
        self.model.set_attn_implementation(GROUPED_SDPA)
        try:
            return self._decode(prompts, prefixes, max_new_tokens)
        finally:
            self.model.set_attn_implementation(stock)

    @torch.inference_mode()
    def _decode(
        self, prompts: Sequence[Sequence[int]], prefixes: Sequence[Prefix | None], max_new_tokens: int
    ) -> tuple[list[list[int]], list[Prefix]]:
        device = self.model.device
        batch = len(prompts)
        reuse = [reusable(p, t) for p, t in zip(prefixes, prompts, strict=False)]
        new = [list(t[r:]) for t, r in zip(prompts, reuse, strict=False)]
        cached, fresh = max(reuse), max(map(len, new))

        input_ids = torch.full((batch, fresh), self.pad_id, dtype=torch.long)
        mask = torch.zeros((batch, cached + fresh), dtype=torch.long)
        positions = torch.zeros((batch, fresh), dtype=torch.long)
        for i, (tokens, r) in enumerate(zip(new, reuse, strict=False)):
            input_ids[i, fresh - len(tokens) :] = torch.tensor(tokens)
            mask[i, cached - r : cached] = 1
            mask[i, cached + fresh - len(tokens) :] = 1
            positions[i, fresh - len(tokens) :] = torch.arange(r, r + len(tokens))
        cache = self._cache(prefixes, reuse, cached, cached + fresh + max_new_tokens)
        input_ids, mask, positions = input_ids.to(device), mask.to(device), positions.to(device)

        rows = torch.arange(batch, device=device)  # the prompt each batch row belongs to
        live = torch.ones(batch, dtype=torch.bool, device=device)  # rows still generating
        seen = self._seen(prompts, device) if self.penalised else None  # tokens each row holds
        generated: list[list[int]] = [[] for _ in range(batch)]
        finished: list[Prefix | None] = [None] * batch
        for length in range(1, max_new_tokens + 1):
            logits = (
                self.model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                .logits[:, -1, :]
                .float()
            )
            step = torch.where(live, self._pick(input_ids, self.scores(logits, seen)), self.pad_id)
            if seen is not None:
                seen[torch.arange(len(step), device=device), step] = True
            done = live & (torch.isin(step, self.eos) | (length == max_new_tokens))
            row_of, tokens = rows.tolist(), step.tolist()  # one device sync per step
            for b, (alive, ended) in enumerate(zip(live.tolist(), done.tolist(), strict=False)):
                if alive:
                    row = row_of[b]
                    generated[row].append(tokens[b])
                    if ended:
                        finished[row] = self._extract(cache, mask, b, list(prompts[row]) + generated[row][:-1])
            live &= ~done
            dead = len(row_of) - int(live.sum())
            if dead == len(row_of):
                break
            if 8 * dead >= len(row_of):  # drop finished rows once they are an eighth of the batch
                keep = live.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, live, step, mask, positions = rows[keep], live[keep], step[keep], mask[keep], positions[keep]
                seen = seen[keep] if seen is not None else None
            input_ids = step.unsqueeze(1)
            mask = torch.cat([mask, live.long().unsqueeze(1)], dim=1)
            positions = positions[:, -1:] + 1
        return generated, cast(list[Prefix], finished)

    def _seen(self, prompts: Sequence[Sequence[int]], device) -> torch.Tensor:
        """[rows, vocabulary] True where a row's conversation holds the token (the repetition penalty's
        `input_ids`: the whole prompt, then every generated token)."""
        vocabulary = self.model.config.get_text_config(decoder=True).vocab_size
        seen = torch.zeros((len(prompts), vocabulary), dtype=torch.bool, device=device)
        for row, tokens in enumerate(prompts):
            seen[row, torch.tensor(list(tokens), dtype=torch.long, device=device)] = True
        return seen

    def scores(self, logits: torch.Tensor, seen: torch.Tensor | None) -> torch.Tensor:
        """The logits after the repetition penalty (`generate`'s RepetitionPenaltyLogitsProcessor: a held
        token's logit divided by the penalty where positive, multiplied where negative)."""
        if seen is None:
            return logits
        penalty = self.sampling.repetition_penalty
        return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)

    def _pick(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.greedy:
            return scores.argmax(dim=-1)
        scores = self.warpers(cast(torch.LongTensor, input_ids), scores)
        return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)

    def _cache(self, prefixes: Sequence[Prefix | None], reuse: Sequence[int], cached: int, capacity: int) -> Cache:
        """Each row's reused keys and values right-aligned in the first `cached` of `capacity` slots.

        A layer that text skips (a vision-language model's cross-attention layer, which attends to image
        states only) gets an empty layer that stays empty: a filled one would tell the model that image
        states are cached, and it would attend to them."""
        config = self.model.config.get_text_config(decoder=True)
        heads = config.num_key_value_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        dtype = next(self.model.parameters()).dtype
        skipped = set(getattr(config, "cross_attention_layers", None) or ())
        layers: list[Any] = []
        for layer in range(config.num_hidden_layers):
            if layer in skipped:
                layers.append(DynamicLayer())
                continue
            keys = torch.zeros((len(prefixes), heads, capacity, dim), dtype=dtype, device=self.model.device)
            values = torch.zeros_like(keys)
            for i, (prefix, r) in enumerate(zip(prefixes, reuse, strict=False)):
                if r and prefix is not None:
                    kv = cast(tuple[torch.Tensor, torch.Tensor], prefix.kv[layer])
                    keys[i, :, cached - r : cached] = kv[0][:, :r]
                    values[i, :, cached - r : cached] = kv[1][:, :r]
            layers.append(BufferedLayer(keys, values, cached))
        return Cache(layers=layers)

    @staticmethod
    def _extract(cache: Cache, mask: torch.Tensor, b: int, tokens: list[int]) -> Prefix:
        """Row b's keys and values at its real (unmasked) positions: exactly the tokens it has been fed
        (None for a layer that text skips)."""
        real = mask[b].bool()
        kv = [
            (layer.keys[b][:, real].clone(), layer.values[b][:, real].clone())
            if isinstance(layer, BufferedLayer)
            else None
            for layer in cache.layers
        ]
        held = next(entry[0].shape[1] for entry in kv if entry is not None)
        if held != len(tokens):
            raise RuntimeError(f"cache holds {held} positions for {len(tokens)} tokens")
        return Prefix(tokens, kv)


class BufferedLayer(DynamicLayer):
    """A cache layer whose keys and values are views into preallocated buffers.

    `DynamicLayer` concatenates on every step, copying the whole cache per generated token; here a step
    writes one slot. The buffers grow (by copy) only if a turn outruns the room it was given.
    """

    keys: torch.Tensor
    values: torch.Tensor

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.dtype, self.device = keys.dtype, keys.device
        self.key_buffer, self.value_buffer = keys, values
        self.is_initialized = True
        self._view(length)

    def _view(self, length: int) -> None:
        self.keys = self.key_buffer[:, :, :length]
        self.values = self.value_buffer[:, :, :length]

    def get_seq_length(self) -> int:
        return self.keys.shape[-2]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        start = self.keys.shape[-2]
        end = start + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            grow = end - self.key_buffer.shape[-2]
            self.key_buffer = torch.nn.functional.pad(self.key_buffer, (0, 0, 0, grow))
            self.value_buffer = torch.nn.functional.pad(self.value_buffer, (0, 0, 0, grow))
        self.key_buffer[:, :, start:end] = key_states
        self.value_buffer[:, :, start:end] = value_states
        self._view(end)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        length = self.keys.shape[-2]
        self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
        self._view(length)
