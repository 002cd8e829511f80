"""Restoration edit specifications: what to put back from a source S into a target T, and the grid's checks.

Kept free of torch at import time so that the workflow can name, check and deduplicate the edited models
of a grid when it builds its DAG; `sftrl.restoration.apply` applies them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, cast

from sftrl.families import tied_embeddings

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EditKind:
    """A family of restoration edits: `svd` ones edit singular triplets of each matrix of the scope (each
    applied by its function in `sftrl.restoration.apply.SVD_EDITS`), the others copy whole decoder layers."""

    name: str
    svd: bool
    puts_back: str  # what of the source it puts into the target, in figures and reports
    colour: str


# The registry (the schema's `edit.kind` enum is checked against it by tests/test_names.py).
EDIT_KINDS = {
    kind.name: kind
    for kind in (
        EditKind("triplet", True, "singular vectors and values", "tab:green"),
        EditKind("direction", True, "singular vectors", "tab:blue"),
        EditKind("value", True, "singular values", "tab:orange"),
        EditKind("layer", False, "whole decoder layers", "tab:purple"),
    )
}
KINDS = tuple(EDIT_KINDS)
SVD_KINDS = tuple(name for name, kind in EDIT_KINDS.items() if kind.svd)
# Parameter families an edit can touch (its `scope`), with the short label they add to an edit's name:
# projections: every matrix of a decoder layer (attention, cross-attention, MLP);
# norms: the vectors of a decoder layer (norm weights; biases and gates where the model has them);
# embeddings: the input embedding; lm_head: the output projection (absent where tied to the embedding).
SCOPE_FAMILIES = {"projections": "proj", "norms": "norm", "embeddings": "emb", "lm_head": "head"}
# Without a scope: SVD edits touch the projections; a layer reset copies every tensor of its layers.
DEFAULT_SCOPE = {"svd": ("projections",), "layer": ("projections", "norms")}
# What an SVD edit does to a matrix whose edited indices cover its whole rank: apply its kind to every index
# (a direction edit keeps the target's singular values), or put the source's matrix in whole, values included
# (the authors' scripts: `if k_top + k_tail == n: return Wb`, e.g. every k/v projection at k_top 2560).
COVERINGS = ("edit", "copy")
# The precision the weights pass through: none (the edit in float32 from the stored weights, rounded once to
# the target's dtype), or float16 (the authors loaded both models in float16 and saved the edited one so:
# every tensor of the output, edited or not, is rounded through float16).
ROUND_TRIPS = ("none", "float16")


class EditError(ValueError):
    """A bad edit request or incompatible models; the message names the offending field or tensor."""


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}".replace(".", "p")


@dataclass(frozen=True)
class EditSpec:
    """One edit of T with S.

    kind: triplet | direction | value | layer.
    top, tail: fractions of the rank in [0, 1] whose first / last singular indices are edited (SVD kinds).
    top_k, tail_k: the same as absolute counts (the authors' grids: k_top 2560, 3072, 3584), cut to each
    matrix's rank as the authors cut them (tail_k to what top_k leaves); not with top or tail.
    covering: COVERINGS, what an SVD edit does where its indices cover the whole rank.
    round_trip: ROUND_TRIPS, the precision every written tensor passes through.
    layers (layer kind): a float f in (0, 1] for the first f of the decoder layers, a string "a:b" of
    fractions for the layers in [a·L, b·L) (quarters: "0:0.25", "0.25:0.5", ...), or a list of indices.
    Fractions of L layers round half up: 0.25 of 28 is layers 0-6, "0.25:0.5" of 40 is layers 10-19.
    scope: the parameter families edited (SCOPE_FAMILIES; default DEFAULT_SCOPE). The authors' edits
    take every matrix: ("projections", "embeddings", "lm_head"), for layer resets too.
    patterns: narrow the decoder-layer tensors of the scope to the names they match.
    """

    kind: str
    top: float = 0.0
    tail: float = 0.0
    layers: float | str | tuple[int, ...] | None = None
    patterns: tuple[str, ...] | None = None
    scope: tuple[str, ...] | None = None
    top_k: int = 0
    tail_k: int = 0
    covering: str = "edit"
    round_trip: str = "none"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise EditError(f"unknown edit kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        for field in ("top", "tail"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise EditError(f"{field} = {value!r} is not a fraction of the rank in [0, 1]")
        for field in ("top_k", "tail_k"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EditError(f"{field} = {value!r} is not a count of singular indices (an integer >= 0)")
        if (self.top_k or self.tail_k) and (self.top or self.tail):
            raise EditError("give the edited indices as fractions (top, tail) or as counts (top_k, tail_k), not both")
        if self.covering not in COVERINGS:
            raise EditError(f"covering = {self.covering!r}; expected one of {', '.join(COVERINGS)}")
        if self.round_trip not in ROUND_TRIPS:
            raise EditError(f"round_trip = {self.round_trip!r}; expected one of {', '.join(ROUND_TRIPS)}")
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if isinstance(self.patterns, (list, str)):
            object.__setattr__(
                self, "patterns", (self.patterns,) if isinstance(self.patterns, str) else tuple(self.patterns)
            )
        if self.scope is not None:
            object.__setattr__(self, "scope", self._checked_scope(self.scope))
        if self.kind == "layer":
            if self.top or self.tail or self.top_k or self.tail_k:
                raise EditError("top/tail (and top_k/tail_k) apply to SVD edits, not to a layer reset")
            self._layer_bounds()  # validates
        elif self.layers is not None:
            raise EditError(f"layers apply to a layer reset, not to a {self.kind} edit")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EditError(f"unknown edit field(s) {unknown}; expected {sorted(known)}")
        return cls(**data)

    def _checked_scope(self, given: str | Iterable[str]) -> tuple[str, ...]:
        scope = (given,) if isinstance(given, str) else tuple(given)
        unknown = sorted(set(scope) - set(SCOPE_FAMILIES))
        if unknown or not scope:
            raise EditError(f"scope {list(scope)!r}: name one or more of {', '.join(SCOPE_FAMILIES)}")
        if self.kind in SVD_KINDS and "norms" in scope:
            raise EditError("scope norms: norms are vectors, and a singular value decomposition needs matrices")
        return tuple(family for family in SCOPE_FAMILIES if family in scope)  # one order, one name

    @property
    def default_families(self) -> tuple[str, ...]:
        return DEFAULT_SCOPE["layer" if self.kind == "layer" else "svd"]

    @property
    def families(self) -> tuple[str, ...]:
        """The parameter families this edit touches."""
        return self.scope or self.default_families

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("layers", "patterns", "scope"):
            if isinstance(data[key], tuple):
                data[key] = list(data[key])
        return data

    @property
    def absolute(self) -> bool:
        """Whether the edited indices are counts (top_k, tail_k) rather than fractions of the rank."""
        return bool(self.top_k or self.tail_k)

    @property
    def name(self) -> str:
        """A filesystem-safe id, e.g. direction-top20-tail0, direction-topk2560-tailk0, layer-first25pct,
        layer-L0to9. The covering and round trip, set for a whole grid, are not in it."""
        if self.kind == "layer":
            base = f"layer-{self._layers_label()}"
        elif self.absolute:
            base = f"{self.kind}-topk{self.top_k}-tailk{self.tail_k}"
        else:
            base = f"{self.kind}-top{_percent(self.top)}-tail{_percent(self.tail)}"
        default = self.default_families
        for family, label in SCOPE_FAMILIES.items():
            if family in self.families and family not in default:
                base += f"-{label}"
            elif family in default and family not in self.families:
                base += f"-no{label}"
        if self.patterns:
            base += "-p" + hashlib.sha256(json.dumps(list(self.patterns)).encode()).hexdigest()[:8]
        return base

    def _layer_bounds(self) -> tuple[float, float] | tuple[int, ...]:
        """(a, b) fractions, or explicit indices."""
        layers = self.layers
        if isinstance(layers, bool) or layers is None:
            raise EditError("a layer reset needs `layers`: a fraction, an 'a:b' fraction range or a list of indices")
        if isinstance(layers, int):
            raise EditError(f"layers = {layers}: give a fraction (e.g. 0.25, 1.0) or a list of indices ([{layers}])")
        if isinstance(layers, float):
            if not 0 < layers <= 1:
                raise EditError(f"layers = {layers!r}: a fraction of the decoder layers must be in (0, 1]")
            return (0.0, float(layers))
        if isinstance(layers, str):
            try:
                start, end = (float(part) for part in layers.split(":"))
            except ValueError:
                raise EditError(f"layers = {layers!r} is not an 'a:b' range of fractions") from None
            if not 0 <= start < end <= 1:
                raise EditError(f"layers = {layers!r}: need 0 <= a < b <= 1")
            return (start, end)
        if not layers or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers):
            raise EditError(f"layers = {list(layers)!r} is not a non-empty list of layer indices")
        return tuple(sorted(set(layers)))

    def layer_fractions(self) -> tuple[float, float] | None:
        """The [a, b) fractions of the decoder layers a layer reset copies; None for explicit indices or an
        SVD edit."""
        if self.kind != "layer" or not isinstance(self.layers, (float, str)):
            return None
        start, end = self._layer_bounds()
        return float(start), float(end)

    def _layers_label(self) -> str:
        bounds = self._layer_bounds()
        if isinstance(self.layers, float):
            return f"first{_percent(bounds[1])}pct"
        if isinstance(self.layers, str):
            return f"{_percent(bounds[0])}to{_percent(bounds[1])}pct"
        runs: list[list[int]] = []
        for index in cast(tuple[int, ...], bounds):
            if runs and index == runs[-1][-1] + 1:
                runs[-1].append(index)
            else:
                runs.append([index])
        return "L" + "_".join(f"{r[0]}to{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)

    def layer_indices(self, num_layers: int) -> list[int]:
        """The decoder layers a layer reset copies, for a model with `num_layers` of them."""
        bounds = self._layer_bounds()
        if isinstance(self.layers, (float, str)):
            start, end = (math.floor(f * num_layers + 0.5) for f in bounds)
            indices = list(range(start, end))
        else:
            indices = list(cast(tuple[int, ...], bounds))
            if indices[-1] >= num_layers:
                raise EditError(f"layers = {list(indices)}: the model has only {num_layers} decoder layers")
        if not indices:
            raise EditError(f"layers = {self.layers!r} selects none of the {num_layers} decoder layers")
        return indices

    def index_set(self, rank: int) -> torch.Tensor:
        """Top ∪ Tail as sorted indices; a non-zero fraction takes at least one index. Counts are cut as
        the authors cut them: top_k to the rank, tail_k to what top_k leaves."""
        import torch  # here, so that planning a grid (names, checks) does not load torch

        if self.absolute:
            top = min(self.top_k, rank)
            tail = min(self.tail_k, rank - top)
        else:
            top, tail = (0 if f == 0 else min(rank, max(1, math.floor(f * rank + 0.5))) for f in (self.top, self.tail))
        chosen = set(range(top)) | set(range(rank - tail, rank))
        return torch.tensor(sorted(chosen), dtype=torch.long)

    def copies_whole(self, rank: int) -> bool:
        """Whether this SVD edit puts the source's matrix of this rank in whole: its indices cover the rank
        and `covering` is copy."""
        return self.covering == "copy" and len(self.index_set(rank)) == rank


def parse_edits(items: Iterable[Mapping[str, Any]], where: str = "edits") -> list[EditSpec]:
    """EditSpecs from config dicts, checked as a grid: each edits something and has its own name."""
    specs = []
    for position, item in enumerate(items):
        try:
            spec = EditSpec.from_dict(dict(item))
        except (EditError, TypeError) as error:
            raise EditError(f"{where}[{position}]: {error}") from None
        if spec.kind in SVD_KINDS and not (spec.top or spec.tail or spec.top_k or spec.tail_k):
            raise EditError(f"{where}[{position}]: a {spec.kind} edit with top = tail = 0 edits nothing")
        specs.append(spec)
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise EditError(f"{where}: {duplicates} given more than once")
    if not specs:
        raise EditError(f"{where}: no edits")
    return specs


def check_scope(specs: Iterable[EditSpec], model_config: Mapping[str, Any] | None, where: str) -> None:
    """Refuse, before any job, a scope family the model has no parameter of: an LM head tied to the
    input embedding is that one matrix (config.json's tie_word_embeddings), edited as `embeddings`."""
    if not model_config:
        return
    for position, spec in enumerate(specs):
        if tied_embeddings(model_config) and "lm_head" in spec.families:
            raise EditError(
                f"{where}[{position}].scope: lm_head names no parameter of this model: its LM head is tied to "
                "the input embedding (tie_word_embeddings), so scope embeddings edits that one matrix"
            )


def check_counts(specs: Iterable[EditSpec], model_config: Mapping[str, Any] | None, where: str) -> None:
    """Refuse, before any job, an absolute edit whose count exceeds the rank of every matrix it can touch
    (the text decoder's hidden size bounds every projection's, the embedding's and the LM head's rank):
    it would copy every matrix whole, or be cut to the whole rank, which a layer reset or a fraction says."""
    if not model_config:
        return
    text = model_config.get("text_config") or model_config
    hidden = text.get("hidden_size")
    if not isinstance(hidden, int):
        return
    for position, spec in enumerate(specs):
        if spec.absolute and spec.top_k + spec.tail_k > hidden:
            raise EditError(
                f"{where}[{position}]: top_k {spec.top_k} + tail_k {spec.tail_k} is above the rank of every matrix "
                f"of this model (at most its hidden size, {hidden}): every matrix would be covered whole; give "
                "fewer indices, a fraction (top: 1.0), or a layer reset"
            )


def num_decoder_layers(model_config: Mapping[str, Any] | None) -> int | None:
    """Decoder layers of a Hugging Face config.json (a vision-language model's text tower), or None."""
    if not model_config:
        return None
    for section in (model_config, model_config.get("text_config") or {}):
        layers = section.get("num_hidden_layers")
        if isinstance(layers, int) and layers > 0:
            return layers
    return None


def dedupe_layer_edits(specs: Iterable[EditSpec], num_layers: int | None) -> tuple[list[EditSpec], dict[str, str]]:
    """Drop layer resets that copy the same layers as an earlier one (first 25% = the first quarter).

    Returns the kept specs, in order, and {dropped name: kept name}. With `num_layers` None (a model
    whose config is not on disk yet) nothing is dropped. Two resets count as the same when they
    select the same layers, patterns and scope.
    """
    kept: list[EditSpec] = []
    dropped: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for spec in specs:
        if spec.kind == "layer" and num_layers is not None:
            key = (tuple(spec.layer_indices(num_layers)), spec.patterns, spec.families)
            if key in seen:
                dropped[spec.name] = seen[key]
                continue
            seen[key] = spec.name
        kept.append(spec)
    return kept, dropped
