"""Generators behind the evaluation engine: Hugging Face `generate` (default) and vLLM (optional)."""

from __future__ import annotations

import hashlib
import os

import torch

from sftrl.evaluate.engine import EvalConfig, Sampling
from sftrl.evaluate.incremental import IncrementalDecoder, Prefix


def chunk_seed(seed: int, call: int, chunk: int) -> int:
    """A stable per-chunk seed: the same (seed, call, chunk) always samples the same tokens."""
    digest = hashlib.sha256(f"sftrl-eval:{seed}:{call}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class HFBackend:
    """Batched generation with Hugging Face models, in two ways.

    With `keys` (the evaluator passes one per episode) and `cfg.reuse_cache`, each conversation keeps its
    KV cache between calls (`IncrementalDecoder`): a turn encodes only the feedback and the new reply.
    Without, each call is a stateless `model.generate` with left padding — the reference implementation's
    way, kept for the one-at-a-time comparison. Left padding keeps every prompt's last token at the end of
    the row; `generate` derives position ids from the attention mask (cumsum - 1), so a padded row sees the
    same positions as the same prompt alone.
    All sampling knobs are passed explicitly, from `cfg.sampling`: the eval section's, or with decoding
    generation_config the checkpoint's own (e.g. Qwen's top_k=20, repetition_penalty=1.05), never a library
    default that changed between releases.
    """

    def __init__(self, model, tokenizer, cfg: EvalConfig):
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; batched generation needs one")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.cfg = cfg
        self.eos_ids = self._eos_ids(model, tokenizer)
        generation = getattr(model, "generation_config", None)
        self.sampling = cfg.sampling(generation.to_diff_dict() if generation is not None else None)
        self._sampling = generate_kwargs(self.sampling)
        self.decoder = IncrementalDecoder(self.model, self.eos_ids, tokenizer.pad_token_id, self.sampling)
        self.prefixes: dict[str, Prefix] = {}
        self.calls = 0
        self.tokens_generated = 0

    @staticmethod
    def _eos_ids(model, tokenizer) -> list[int]:
        """Stop at the tokenizer's eos and at every eos the checkpoint's generation config names."""
        ids = [tokenizer.eos_token_id]
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids += configured if isinstance(configured, list) else [configured]
        ids = sorted({i for i in ids if i is not None})
        if not ids:
            raise ValueError("neither the tokenizer nor the model's generation config names an eos token")
        return ids

    def generate(self, conversations: list[list[dict]], keys: list[str] | None = None) -> list[str]:
        """One reply per conversation. `keys` name the conversations across calls: a key's cache is reused
        when its conversation continues the last one seen under it, and keys missing from a call are
        forgotten (their episodes are over)."""
        self.calls += 1
        reuse = keys is not None and self.cfg.reuse_cache
        size = self.cfg.batch_size
        replies: list[str] = []
        prefixes: dict[str, Prefix] = {}
        for chunk, start in enumerate(range(0, len(conversations), size)):
            torch.manual_seed(chunk_seed(self.cfg.seed, self.calls, chunk))
            texts = self._texts(conversations[start : start + size])
            if reuse and keys is not None:
                replies += self._continue_chunk(texts, keys[start : start + size], prefixes)
            else:
                replies += self._generate_chunk(texts)
        self.prefixes = prefixes
        return replies

    def render(self, conversation: list[dict]) -> str:
        """The text the model reads for a conversation: the checkpoint's chat template, generation prompt
        included (tokenized as is, without adding special tokens: the template holds them)."""
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    def _texts(self, conversations: list[list[dict]]) -> list[str]:
        return [self.render(conversation) for conversation in conversations]

    def _continue_chunk(self, texts: list[str], keys: list[str], prefixes: dict[str, Prefix]) -> list[str]:
        prompts = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        generated, ends = self.decoder.decode(
            prompts, [self.prefixes.get(key) for key in keys], self.cfg.max_new_tokens
        )
        prefixes.update(zip(keys, ends, strict=False))
        self.tokens_generated += sum(map(len, generated))
        return self.tokenizer.batch_decode(generated, skip_special_tokens=True)

    @torch.inference_mode()
    def _generate_chunk(self, texts: list[str]) -> list[str]:
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.model.device)
        output = self.model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=self.cfg.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
            use_cache=True,
            **self._sampling,
        )
        new = output[:, batch["input_ids"].shape[1] :]
        self.tokens_generated += int(self._lengths(new).sum())
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _lengths(self, new: torch.Tensor) -> torch.Tensor:
        """Tokens each row really generated: up to and including its first eos (the rest is padding)."""
        is_eos = torch.isin(new, torch.tensor(self.eos_ids, device=new.device))
        first = is_eos.int().argmax(dim=1)
        return torch.where(is_eos.any(dim=1), first + 1, torch.full_like(first, new.shape[1]))


def checkpoint_generation_config(model_dir: str | os.PathLike) -> dict:
    """The knobs a checkpoint's generation_config.json sets ({} where it has none)."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(str(model_dir)).to_diff_dict()
    except OSError:
        return {}


def generate_kwargs(sampling: Sampling) -> dict:
    """`generate()` keyword arguments that state every sampling knob."""
    if sampling.greedy:
        return {"do_sample": False, "repetition_penalty": sampling.repetition_penalty}
    return {
        "do_sample": True,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "repetition_penalty": sampling.repetition_penalty,
    }


class VLLMBackend:
    """vLLM's `LLM.chat`: continuous batching on GPU; vLLM schedules, `batch_size` caps concurrent sequences."""

    def __init__(self, model_dir: str | os.PathLike, cfg: EvalConfig):
        try:
            import vllm
        except ImportError as err:
            raise RuntimeError(
                "eval backend 'vllm' was requested but vllm is not installed; "
                "install it (pip install vllm, GPU only) or set eval.backend to 'hf'"
            ) from err
        self.llm = vllm.LLM(
            model=str(model_dir),
            dtype=cfg.dtype,
            seed=cfg.seed,
            max_num_seqs=cfg.batch_size,
            trust_remote_code=cfg.trust_remote_code,
            enable_prefix_caching=cfg.reuse_cache,  # a turn's prompt is the last turn's prompt and reply
        )
        # No per-request seed: it would make the `samples` copies of one prompt sample identical tokens.
        sampling = cfg.sampling(checkpoint_generation_config(model_dir) if cfg.decoding != "settings" else None)
        self.params = vllm.SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            repetition_penalty=sampling.repetition_penalty,
            max_tokens=cfg.max_new_tokens,
        )
        self.tokens_generated = 0

    def render(self, conversation: list[dict]) -> str:
        """The text the model reads for a conversation: `LLM.chat` applies the checkpoint's chat template."""
        return self.llm.get_tokenizer().apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    def generate(self, conversations: list[list[dict]], keys: list[str] | None = None) -> list[str]:
        """vLLM finds shared prefixes itself (`enable_prefix_caching`), so `keys` are not needed."""
        outputs = self.llm.chat(conversations, self.params, use_tqdm=False)
        self.tokens_generated += sum(len(out.outputs[0].token_ids) for out in outputs)
        return [out.outputs[0].text for out in outputs]


def hf_backend(model_dir: str | os.PathLike, cfg: EvalConfig) -> HFBackend:
    from sftrl.modeling import load_model

    model, tokenizer = load_model(
        model_dir, dtype=cfg.dtype, device=resolve_device(cfg.device), trust_remote_code=cfg.trust_remote_code
    )
    return HFBackend(model, tokenizer, cfg)


# The registry of backends, each built from a model directory and the eval config: a new backend is a class
# with `generate(conversations, keys)` and one line here (its name joins `engine.BACKENDS`, which checks a
# config without loading torch, and the schema's `eval.backend`; tests check the three agree).
BACKEND_BUILDERS = {"hf": hf_backend, "vllm": VLLMBackend}


def make_backend(model_dir: str | os.PathLike, cfg: EvalConfig):
    """The backend `cfg.backend` names, with the model loaded from a Hugging Face model directory."""
    return BACKEND_BUILDERS[cfg.backend](model_dir, cfg)
