"""What the study knows of each model family, in one registry a reader can follow.

A family is named by config.json's `model_type`. Its entry says which 2-D weights a decoder layer holds
(the projections that the spectra analyse and that the direction and value edits touch), which of them are
fused (one stored matrix holding several logical ones: Phi-3's `qkv_proj` and `gate_up_proj`), which weights
a text-only study never reaches (Llama 3.2 Vision's cross-attention), whether the LM head is tied to the
embedding when config.json does not say (the config class's default), which projections carry biases (the
memory plan's parameter count), and whether it loads as a vision-language model.

Fused matrices are analysed and edited as stored: one SVD of `qkv_proj`, whose singular directions span q, k
and v at once. Split into q, k and v, the spectra of Phi-3 would be those of another parametrisation than
the one it trains; the tables name the stored matrix, and `logical_parts` says what it holds.

Every analysis checks its coverage (`check_coverage`): each 2-D weight of each decoder layer is analysed or
named here as unreached by text, never silently left out. Adding a family is one entry in FAMILIES and its
rehearsal in tests/test_families.py. Torch-free: the workflow imports it to refuse an unknown family at the
dry run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Decoder layers of Llama-layout models (`model.layers.3.`) and of Llama-3.2-Vision's text tower
# (`language_model.model.layers.3.`, or `model.language_model.layers.3.` as transformers 5 saves it).
# Anchored at the start so the vision tower's `vision_model.transformer.layers.3.` never matches.
DECODER_LAYER = re.compile(r"^(?:model\.)?(?:language_model\.)?(?:model\.)?layers\.(\d+)\.")
EMBEDDINGS = re.compile(r"^(?:model\.)?(?:language_model\.)?(?:model\.)?embed_tokens\.weight$")
LM_HEAD = re.compile(r"^(?:language_model\.)?lm_head\.weight$")


class UnknownFamily(ValueError):
    """A model whose family has no entry in FAMILIES: nothing may analyse it in part."""


@dataclass(frozen=True)
class Family:
    """One model family's layout; module names are those under a decoder layer's `self_attn.` and `mlp.`."""

    attention: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    mlp: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")
    fused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # stored matrix -> the logical ones in it
    tied_default: bool = False  # tie_word_embeddings where config.json leaves it out
    qkv_bias: bool = False  # q, k and v carry biases whatever attention_bias says (Qwen2)
    unreached: tuple[str, ...] = ()  # modules of a decoder layer that a text-only forward never uses
    # A vision-language family, run on text: the prefixes (from its loaded config) of the parameters text
    # never reaches, frozen in training (`modeling.freeze_beyond_text`); it loads in its own class.
    beyond_text: Callable[[Any], tuple[str, ...]] | None = None

    @property
    def vision(self) -> bool:
        return self.beyond_text is not None

    @property
    def projections(self) -> str:
        """The regular expression of the decoder layers' projection weights."""
        attention = "|".join(re.escape(name) for name in self.attention)
        mlp = "|".join(re.escape(name) for name in self.mlp)
        return DECODER_LAYER.pattern + rf"(?:self_attn\.(?:{attention})|mlp\.(?:{mlp}))\.weight$"

    def logical_parts(self, module: str) -> tuple[str, ...]:
        """The logical matrices a stored one holds: ("q_proj", "k_proj", "v_proj") for Phi-3's qkv_proj."""
        return tuple(self.fused.get(module, (module,)))


def _mllama_beyond_text(config) -> tuple[str, ...]:
    """Llama 3.2 Vision: the vision tower, its projector, and the cross-attention decoder layers, which
    a conversation without images skips."""
    layers = config.get_text_config(decoder=True).cross_attention_layers
    return (
        "model.vision_model.",
        "model.multi_modal_projector.",
        *(f"model.language_model.layers.{i}." for i in layers),
    )


LLAMA = Family()
FAMILIES: dict[str, Family] = {
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": Family(qkv_bias=True),
    "qwen3": LLAMA,  # its q_norm and k_norm are 1-D: norms, not projections
    "gemma2": Family(tied_default=True),  # four norms a layer, all 1-D
    "phi3": Family(
        attention=("qkv_proj", "o_proj"),
        mlp=("gate_up_proj", "down_proj"),
        fused={"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")},
    ),
    # Llama 3.2 Vision's text decoder; its cross-attention layers attend to image states only.
    "mllama": Family(unreached=("cross_attn.",), beyond_text=_mllama_beyond_text),
}


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The text decoder's part of a config.json (a vision-language model nests it in `text_config`)."""
    return config.get("text_config") or config


def family_of(config: Mapping[str, Any], where: str = "the model") -> Family:
    """The family of a config.json; an UnknownFamily names it and what to add."""
    model_type = config.get("model_type")
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    raise UnknownFamily(
        f"{where}: model family {model_type!r} (config.json's model_type) is unknown to this workflow, which "
        "would analyse and edit it in part: add its entry to FAMILIES in src/sftrl/families.py (its decoder "
        "layers' projections, fused matrices and tied-head default) and its rehearsal to tests/test_families.py. "
        f"Known: {', '.join(sorted(FAMILIES))}"
    )


def tied_embeddings(config: Mapping[str, Any]) -> bool:
    """Whether the LM head is the embedding matrix: config.json's tie_word_embeddings (on the top level or
    in a text config), else the family's default."""
    for section in (config, config.get("text_config") or {}):
        if "tie_word_embeddings" in section:
            return bool(section["tie_word_embeddings"])
    return family_of(config).tied_default


def check_coverage(shapes: Mapping[str, tuple[int, ...]], analysed: Iterable[str], family: Family, where: str) -> None:
    """Every 2-D weight of every decoder layer is analysed, or one that text never reaches: a layout with
    a matrix the family's entry does not name (a fused one, a new projection) is an error, not a partial
    analysis."""
    chosen = set(analysed)
    left = [
        name
        for name, shape in shapes.items()
        if len(shape) == 2
        and DECODER_LAYER.match(name)
        and name not in chosen
        and not any(f".{module}" in name for module in family.unreached)
    ]
    if left:
        raise UnknownFamily(
            f"{where}: {len(left)} 2-D weight(s) of its decoder layers match none of its family's projections, "
            f"e.g. {left[:3]}: the analysis would cover the layers in part. Name them in the family's entry "
            "(src/sftrl/families.py)"
        )
