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
components exactly as T had them. A layer reset copies S's tensors of the chosen decoder layers (bit for
bit when S and T share a dtype): all of them by default, those of its scope when it names one (the
embedding and LM head are then copied whole). Unedited tensors are T's bytes, unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import cast

import torch

from sftrl.families import DECODER_LAYER, EMBEDDINGS, LM_HEAD
from sftrl.io import atomic_path
from sftrl.provenance import provenance
from sftrl.restoration.spec import SVD_KINDS, EditError, EditSpec
from sftrl.spectral.svd import Svd, SvdCache
from sftrl.spectral.weights import (
    DTYPES,
    INDEX_FILE,
    ModelWeights,
    SafetensorsWriter,
    WeightsError,
    check_matching,
    select,
)

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
EDIT_RECORD = "edit.json"


def put_back_directions(target, u_t, s_t, vh_t, u_s, s_s, vh_s):
    """The source's singular vectors with the target's singular values."""
    return target - (u_t * s_t) @ vh_t + (u_s * s_t) @ vh_s


def put_back_values(target, u_t, s_t, vh_t, u_s, s_s, vh_s):
    """The source's singular values in the target's singular vectors."""
    return target + (u_t * (s_s - s_t)) @ vh_t


def put_back_triplets(target, u_t, s_t, vh_t, u_s, s_s, vh_s):
    """The source's singular vectors and values."""
    return target - (u_t * s_t) @ vh_t + (u_s * s_s) @ vh_s


# How each SVD kind of `sftrl.restoration.spec.EDIT_KINDS` edits a matrix, given both thin SVDs restricted to the
# edited indices (target T: u_t, s_t, vh_t; source S: u_s, s_s, vh_s).
SVD_EDITS = {"direction": put_back_directions, "value": put_back_values, "triplet": put_back_triplets}


def svd_edit(kind: str, target: torch.Tensor, svd_t: Svd, svd_s: Svd, index: torch.Tensor) -> torch.Tensor:
    """The edited float32 matrix (see the module docstring); `target` is T's matrix in float32."""
    if kind not in SVD_KINDS:
        raise EditError(f"{kind!r} is not an SVD edit")
    if len(index) == 0:
        return target
    index = index.to(target.device)
    return SVD_EDITS[kind](
        target,
        svd_t.u[:, index],
        svd_t.s[index],
        svd_t.vh[index],
        svd_s.u[:, index],
        svd_s.s[index],
        svd_s.vh[index],
    )


def decoder_layer_count(weights: ModelWeights) -> int:
    indices = [int(m.group(1)) for name in weights.names if (m := DECODER_LAYER.match(name))]
    if not indices:
        raise EditError(f"{weights.path}: no decoder-layer tensors (names like model.layers.0.…)")
    return max(indices) + 1


def _edited_names(spec: EditSpec, weights: ModelWeights, names: list[str], tied: bool) -> set[str]:
    """The tensors of T (among the ones written) that `spec` edits: its scope's families, the decoder
    layers' tensors narrowed by its patterns and, for a layer reset, to its layers."""
    layers = set(spec.layer_indices(decoder_layer_count(weights))) if spec.kind == "layer" else None
    in_layers = [n for n in names if (m := DECODER_LAYER.match(n)) and (layers is None or int(m.group(1)) in layers)]
    if spec.patterns:
        in_layers = select(in_layers, spec.patterns)
    families = {
        "projections": [n for n in in_layers if len(weights.info(n).shape) == 2],
        "norms": [n for n in in_layers if len(weights.info(n).shape) < 2],
        "embeddings": [n for n in names if EMBEDDINGS.match(n)],
        "lm_head": [] if tied else [n for n in names if LM_HEAD.match(n)],
    }
    chosen: set[str] = set()
    for family in spec.families:
        if not families[family]:
            why = " (tied to the input embedding: scope embeddings edits it)" if family == "lm_head" and tied else ""
            raise EditError(f"{spec.name}: scope {family} selects no tensor of {weights.path}{why}")
        chosen.update(families[family])
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
        if item.name == INDEX_FILE or item.name.endswith(WEIGHT_SUFFIXES) or item.name.endswith(".index.json"):
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
        for spec, tmp in zip(specs, tmps, strict=False):
            (tmp / EDIT_RECORD).write_text(json.dumps({"edit": spec.to_dict(), "name": spec.name, **record}, indent=2))
    for spec, path in zip(specs, out_paths, strict=False):
        log.info("wrote %s (%s of %s with %s)", path, spec.name, target.path, source.path)
    return out_paths


def _rounded(tensor: torch.Tensor, round_trip: str) -> torch.Tensor:
    """The tensor as its round trip leaves it: through float16 and back (`round_trip` float16), or as it is."""
    return tensor.to(torch.float16).to(tensor.dtype) if round_trip == "float16" else tensor


def _write_tensor(name, specs, plans, writers, source, target, cache, device) -> None:
    """Write tensor `name` of every output: T's bytes, S's (layer reset, or an SVD edit that covers the rank
    with covering copy) or an SVD edit, each through its round trip."""
    original = target.get(name)
    editing = [spec for spec, plan in zip(specs, plans, strict=False) if name in plan]
    source_tensor = source.get(name) if editing else None
    svds: dict[str, tuple[torch.Tensor, Svd, Svd]] = {}  # per round trip: T in float32 and both SVDs
    decomposed = [s for s in editing if s.kind in SVD_KINDS and not s.copies_whole(min(original.shape))]
    for round_trip in dict.fromkeys(spec.round_trip for spec in decomposed):
        variant = "" if round_trip == "none" else round_trip
        t32 = _rounded(original, round_trip).to(device, torch.float32)
        s32 = _rounded(cast(torch.Tensor, source_tensor), round_trip).to(device, torch.float32)
        svds[round_trip] = (t32, cache.get(target, name, t32, variant), cache.get(source, name, s32, variant))
    for spec, plan, writer in zip(specs, plans, writers, strict=False):
        if name not in plan:
            out = _rounded(original, spec.round_trip)
        elif spec.kind == "layer" or spec.copies_whole(min(original.shape)):
            out = _rounded(cast(torch.Tensor, source_tensor).to(original.dtype), spec.round_trip)
        else:
            t32, svd_t, svd_s = svds[spec.round_trip]
            edited = svd_edit(spec.kind, t32, svd_t, svd_s, spec.index_set(len(svd_t.s)))
            out = edited.to("cpu", torch.float16 if spec.round_trip == "float16" else original.dtype)
            out = out.to(original.dtype)
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
