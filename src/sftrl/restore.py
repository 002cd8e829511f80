"""Restoration: edit a target checkpoint T with parts of a source S (singular vectors, values, layers).

Each edit writes a complete model directory: every non-weight file of T's directory (config, tokenizer,
generation config) copied, the weights re-written as safetensors in T's layout and T's dtypes (bf16 stays
bf16; edits are computed in float32 and rounded once), plus `edit.json` saying what was done. Directories
appear under their final names only when complete.

With thin SVDs T = U_t Σ_t V_tᵀ, S = U_s Σ_s V_sᵀ and the index set I = Top ∪ Tail (first and last
fractions of the rank), an SVD edit replaces the rank-one components i ∈ I of T:

    W = T − Σ_{i∈I} σ_i^t u_i^t v_i^tᵀ + Σ_{i∈I} σ_i' u_i' v_i'ᵀ
    triplet:   (u', σ', v') = (u^s, σ^s, v^s)
    direction: (u', σ', v') = (u^s, σ^t, v^s)  — T's singular values kept, also when I is the whole rank
    value:     (u', σ', v') = (u^t, σ^s, v^t)

Writing the edit as an update of T (rather than re-multiplying all factors) leaves the untouched
components exactly as T had them. A layer reset copies all of S's tensors of the chosen decoder layers
(bit for bit when S and T share a dtype). Unedited tensors are T's bytes, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from sftrl.io import atomic_path
from sftrl.provenance import provenance
from sftrl.weights import (
    DECODER_LAYER,
    DEFAULT_PATTERNS,
    DTYPES,
    EMBEDDINGS,
    INDEX_FILE,
    LM_HEAD,
    ModelWeights,
    SafetensorsWriter,
    Svd,
    SvdCache,
    WeightsError,
    check_matching,
    select,
)

log = logging.getLogger(__name__)

KINDS = ("triplet", "direction", "value", "layer")
SVD_KINDS = ("triplet", "direction", "value")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
EDIT_RECORD = "edit.json"


class EditError(ValueError):
    """A bad edit request or incompatible models; the message names the offending field or tensor."""


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}".replace(".", "p")


@dataclass(frozen=True)
class EditSpec:
    """One edit of T with S.

    kind: triplet | direction | value | layer.
    top, tail: fractions of the rank in [0, 1] whose first / last singular indices are edited (SVD kinds).
    layers (layer kind): a float f in (0, 1] for the first f of the decoder layers, a string "a:b" of
    fractions for the layers in [a·L, b·L) (quarters: "0:0.25", "0.25:0.5", ...), or a list of indices.
    Fractions of L layers round half up: 0.25 of 28 is layers 0-6, "0.25:0.5" of 40 is layers 10-19.
    patterns: which tensors are edited (default: the decoder projections for SVD kinds, every tensor of
    the chosen layers for a layer reset, which patterns then narrow).
    include_embeddings, include_lm_head: also edit the input embedding / LM head. When the config ties
    them they are one matrix, which either flag edits.
    """

    kind: str
    top: float = 0.0
    tail: float = 0.0
    layers: float | str | tuple[int, ...] | None = None
    patterns: tuple[str, ...] | None = None
    include_embeddings: bool = False
    include_lm_head: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise EditError(f"unknown edit kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        for field in ("top", "tail"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise EditError(f"{field} = {value!r} is not a fraction of the rank in [0, 1]")
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if isinstance(self.patterns, (list, str)):
            object.__setattr__(
                self, "patterns", (self.patterns,) if isinstance(self.patterns, str) else tuple(self.patterns)
            )
        if self.kind == "layer":
            if self.top or self.tail:
                raise EditError("top/tail apply to SVD edits, not to a layer reset")
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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("layers", "patterns"):
            if isinstance(data[key], tuple):
                data[key] = list(data[key])
        return data

    @property
    def name(self) -> str:
        """A filesystem-safe id, e.g. direction-top20-tail0, layer-first25pct, layer-L0to9."""
        if self.kind == "layer":
            base = f"layer-{self._layers_label()}"
        else:
            base = f"{self.kind}-top{_percent(self.top)}-tail{_percent(self.tail)}"
        if self.include_embeddings:
            base += "-emb"
        if self.include_lm_head:
            base += "-head"
        if self.patterns:
            base += "-p" + hashlib.sha256(json.dumps(list(self.patterns)).encode()).hexdigest()[:8]
        return base

    def _layer_bounds(self) -> tuple[float, float] | tuple[int, ...]:
        """(a, b) fractions, or explicit indices."""
        layers = self.layers
        if isinstance(layers, bool) or layers is None:
            raise EditError(
                "a layer reset needs `layers`: a fraction, an 'a:b' fraction range or a list of indices"
            )
        if isinstance(layers, int):
            raise EditError(
                f"layers = {layers}: give a fraction (e.g. 0.25, 1.0) or a list of indices ([{layers}])"
            )
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

    def _layers_label(self) -> str:
        bounds = self._layer_bounds()
        if isinstance(self.layers, float):
            return f"first{_percent(bounds[1])}pct"
        if isinstance(self.layers, str):
            return f"{_percent(bounds[0])}to{_percent(bounds[1])}pct"
        runs: list[list[int]] = []
        for index in bounds:
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
            indices = list(bounds)
            if indices[-1] >= num_layers:
                raise EditError(f"layers = {list(indices)}: the model has only {num_layers} decoder layers")
        if not indices:
            raise EditError(f"layers = {self.layers!r} selects none of the {num_layers} decoder layers")
        return indices

    def index_set(self, rank: int) -> torch.Tensor:
        """Top ∪ Tail as sorted indices; a non-zero fraction takes at least one index."""
        top, tail = (
            0 if f == 0 else min(rank, max(1, math.floor(f * rank + 0.5))) for f in (self.top, self.tail)
        )
        chosen = set(range(top)) | set(range(rank - tail, rank))
        return torch.tensor(sorted(chosen), dtype=torch.long)


def svd_edit(kind: str, target: torch.Tensor, svd_t: Svd, svd_s: Svd, index: torch.Tensor) -> torch.Tensor:
    """The edited float32 matrix (see the module docstring); `target` is T's matrix in float32."""
    if kind not in SVD_KINDS:
        raise EditError(f"{kind!r} is not an SVD edit")
    if len(index) == 0:
        return target
    index = index.to(target.device)
    u_t, s_t, vh_t = svd_t.u[:, index], svd_t.s[index], svd_t.vh[index]
    if kind == "value":
        return target + (u_t * (svd_s.s[index] - s_t)) @ vh_t
    u_s, vh_s = svd_s.u[:, index], svd_s.vh[index]
    s_new = svd_s.s[index] if kind == "triplet" else s_t
    return target - (u_t * s_t) @ vh_t + (u_s * s_new) @ vh_s


def decoder_layer_count(weights: ModelWeights) -> int:
    indices = [int(m.group(1)) for name in weights.names if (m := DECODER_LAYER.match(name))]
    if not indices:
        raise EditError(f"{weights.path}: no decoder-layer tensors (names like model.layers.0.…)")
    return max(indices) + 1


def _edited_names(spec: EditSpec, weights: ModelWeights, names: list[str], tied: bool) -> set[str]:
    """The tensors of T (among the ones written) that `spec` edits."""
    if spec.kind == "layer":
        layers = set(spec.layer_indices(decoder_layer_count(weights)))
        in_layers = [n for n in names if (m := DECODER_LAYER.match(n)) and int(m.group(1)) in layers]
        chosen = set(select(in_layers, spec.patterns) if spec.patterns else in_layers)
    else:
        chosen = set(select(names, spec.patterns or DEFAULT_PATTERNS))
    for regex, flag in ((EMBEDDINGS, "include_embeddings"), (LM_HEAD, "include_lm_head")):
        hit = next((n for n in sorted(chosen) if regex.match(n)), None)
        if hit and not getattr(spec, flag):
            raise EditError(f"{spec.name}: patterns select {hit!r}; set {flag} to edit it")
    wanted = [(EMBEDDINGS, spec.include_embeddings or (tied and spec.include_lm_head), "embedding")]
    if not tied:
        wanted.append((LM_HEAD, spec.include_lm_head, "LM head"))
    for regex, on, label in wanted:
        if on:
            found = [n for n in names if regex.match(n)]
            if not found:
                raise EditError(f"{spec.name}: {weights.path} has no {label} tensor ({regex.pattern})")
            chosen.update(found)
    if spec.kind in SVD_KINDS:
        for name in chosen:
            if len(weights.info(name).shape) != 2:
                raise EditError(f"{spec.name}: tensor {name!r} is not a matrix; SVD edits need 2-D weights")
    return chosen


def _check_models(source: ModelWeights, target: ModelWeights, names: list[str], tied: bool) -> None:
    for key in ("model_type", "architectures"):
        if source.config.get(key) != target.config.get(key):
            raise EditError(
                f"different architectures: {key} is {source.config.get(key)!r} in {source.path} "
                f"but {target.config.get(key)!r} in {target.path}"
            )
    source_names = {n for n in source.names if not (tied and LM_HEAD.match(n))}
    extra = sorted(source_names - set(names))
    if extra:
        raise EditError(
            f"tensor {extra[0]!r} (and {len(extra) - 1} more) of {source.path} is missing from {target.path}"
        )
    try:
        check_matching(source, target, names)
    except WeightsError as error:
        raise EditError(str(error)) from None


def _copy_non_weights(target: Path, out: Path) -> None:
    out.mkdir(parents=True)
    for item in target.iterdir():
        if (
            item.name == INDEX_FILE
            or item.name.endswith(WEIGHT_SUFFIXES)
            or item.name.endswith(".index.json")
        ):
            continue
        if item.is_dir():
            shutil.copytree(item, out / item.name)
        else:
            shutil.copy2(item, out / item.name)


def apply_edits(
    source_dir: str | os.PathLike,
    target_dir: str | os.PathLike,
    specs: Sequence[EditSpec],
    out_dirs: Sequence[str | os.PathLike],
    svd_cache: SvdCache | None = None,
) -> list[Path]:
    """Write one edited copy of T per spec, reading each tensor and computing each SVD once for all.

    The outer loop runs over T's tensors (shard by shard), the inner over the specs, so a grid of N edits
    costs one pass of reads and SVDs plus N cheap updates and writes. Memory stays a small multiple of
    the largest tensor. On any error no output directory appears.
    """
    specs = list(specs)
    out_paths = [Path(d) for d in out_dirs]
    if len(specs) != len(out_paths):
        raise EditError(f"{len(specs)} edits but {len(out_paths)} output directories")
    if len({p.resolve() for p in out_paths}) != len(out_paths):
        raise EditError("two edits write to the same output directory")
    source, target = ModelWeights(source_dir), ModelWeights(target_dir)
    for path in out_paths:
        if path.resolve() in (source.path.resolve(), target.path.resolve()):
            raise EditError(f"output directory {path} is the source or target model")
    tied = target.tied_embeddings()
    names = [n for n in target.names if not (tied and LM_HEAD.match(n))]
    _check_models(source, target, names, tied)
    plans = [_edited_names(spec, target, names, tied) for spec in specs]
    cache = svd_cache or SvdCache()
    device = cache.device
    record = {
        "source": str(source.path),
        "target": str(target.path),
        "source_fingerprint": source.fingerprint,
        "target_fingerprint": target.fingerprint,
        "provenance": provenance({"source": str(source.path), "target": str(target.path)}),
    }

    with ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(path)) for path in out_paths]
        for tmp in tmps:
            _copy_non_weights(target.path, tmp)
        for file in target.files:
            entries = [target.info(n) for n in names if target.info(n).file == file]
            with ExitStack() as writers_stack:
                writers = [
                    writers_stack.enter_context(SafetensorsWriter(tmp / file, entries, target.metadata[file]))
                    for tmp in tmps
                ]
                for entry in entries:
                    _write_tensor(entry.name, specs, plans, writers, source, target, cache, device)
        if (target.path / INDEX_FILE).is_file():
            _write_index(target, names, tmps)
        for spec, tmp in zip(specs, tmps):
            (tmp / EDIT_RECORD).write_text(
                json.dumps({"edit": spec.to_dict(), "name": spec.name, **record}, indent=2)
            )
    for spec, path in zip(specs, out_paths):
        log.info("wrote %s (%s of %s with %s)", path, spec.name, target.path, source.path)
    return out_paths


def _write_tensor(name, specs, plans, writers, source, target, cache, device) -> None:
    """Write tensor `name` of every output: T's bytes, S's (layer reset) or an SVD edit."""
    original = target.get(name)
    editing = [spec for spec, plan in zip(specs, plans) if name in plan]
    source_tensor = source.get(name) if editing else None
    t32 = svd_t = svd_s = None
    if any(spec.kind in SVD_KINDS for spec in editing):
        t32 = original.to(device, torch.float32)
        svd_t = cache.get(target, name, t32)
        svd_s = cache.get(source, name, source_tensor.to(device, torch.float32))
    for spec, plan, writer in zip(specs, plans, writers):
        if name not in plan:
            out = original
        elif spec.kind == "layer":
            out = source_tensor.to(original.dtype)
        else:
            edited = svd_edit(spec.kind, t32, svd_t, svd_s, spec.index_set(len(svd_t.s)))
            out = edited.to("cpu", original.dtype)
        writer.write(name, out)


def _write_index(target: ModelWeights, names: list[str], tmps: list[Path]) -> None:
    index = json.loads((target.path / INDEX_FILE).read_text())
    index["weight_map"] = {name: target.info(name).file for name in names}
    total = sum(math.prod(target.info(n).shape) * DTYPES[target.info(n).dtype].itemsize for n in names)
    index.setdefault("metadata", {})["total_size"] = total
    for tmp in tmps:
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def edit_grid(
    source_dir: str | os.PathLike,
    target_dir: str | os.PathLike,
    specs: Sequence[EditSpec],
    out_root: str | os.PathLike,
    svd_cache: SvdCache | None = None,
) -> list[Path]:
    """`apply_edits` with each output at out_root/{spec.name}."""
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EditError(f"edits with the same name {duplicates}: each needs its own directory")
    return apply_edits(source_dir, target_dir, specs, [Path(out_root) / n for n in names], svd_cache)
