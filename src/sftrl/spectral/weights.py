"""Streaming access to the weights of a Hugging Face model directory: read, select and write tensors.

Spectral analysis and restoration must run on nodes with less RAM than three copies of a 7B/11B model,
so nothing here loads a model: tensor names, shapes and dtypes come from the safetensors headers, and
tensors are read one at a time (`safe_open`, framework "pt" so bf16 is read as bf16). Output is written
the same way, by `SafetensorsWriter`, which streams one tensor after another into a file whose header
is known in advance.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from sftrl import families
from sftrl.families import DECODER_LAYER, Family

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
DTYPE_CODES = {dtype: code for code, dtype in DTYPES.items()}


class WeightsError(ValueError):
    """Unreadable or mismatched weights; the message names the directory or tensor concerned."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors code, e.g. "BF16"
    file: str  # the shard file, relative to the model directory


class ModelWeights:
    """Lazy view of the safetensors weights of one model directory (single file or sharded)."""

    def __init__(self, model_dir: str | os.PathLike):
        self.path = Path(model_dir)
        if (self.path / INDEX_FILE).is_file():
            weight_map = json.loads((self.path / INDEX_FILE).read_text())["weight_map"]
            self.files = sorted(set(weight_map.values()))
        elif (self.path / SINGLE_FILE).is_file():
            self.files = [SINGLE_FILE]
        else:
            raise WeightsError(f"{self.path}: no {SINGLE_FILE} or {INDEX_FILE} (safetensors weights needed)")
        self.infos: dict[str, TensorInfo] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        for file in self.files:
            with safe_open(self.path / file, framework="pt") as handle:
                self.metadata[file] = handle.metadata() or {}
                for name in handle.keys():  # noqa: SIM118 - not a dict
                    view = handle.get_slice(name)
                    self.infos[name] = TensorInfo(name, tuple(view.get_shape()), view.get_dtype(), file)

    @property
    def names(self) -> list[str]:
        return list(self.infos)

    def __contains__(self, name: str) -> bool:
        return name in self.infos

    def info(self, name: str) -> TensorInfo:
        try:
            return self.infos[name]
        except KeyError:
            raise WeightsError(f"{self.path}: no tensor named {name!r}") from None

    def get(self, name: str) -> torch.Tensor:
        """One tensor, in its stored dtype, on the CPU."""
        with safe_open(self.path / self.info(name).file, framework="pt") as handle:
            return handle.get_tensor(name)

    @cached_property
    def config(self) -> dict[str, Any]:
        path = self.path / "config.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @cached_property
    def fingerprint(self) -> str:
        """Identity of the weights for the SVD cache: path, size and mtime of every weight file.

        Hashing the contents would cost a full read of a multi-GB checkpoint; a rewritten file changes
        its mtime, which is what invalidates the cache.
        """
        parts = [str(self.path.resolve())]
        for file in self.files:
            stat = (self.path / file).stat()
            parts.append(f"{file}:{stat.st_size}:{stat.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]

    def tied_embeddings(self) -> bool:
        """Whether the LM head shares the embedding matrix (the family's default when unset)."""
        return families.tied_embeddings(self.config)

    @cached_property
    def family(self) -> Family:
        """The model's family (sftrl.families), from its config.json; an unknown one is an error."""
        return families.family_of(self.config, str(self.path))

    def analysed(self, patterns: Sequence[str] | None = None) -> list[str]:
        """The tensors an analysis reads: those matching `patterns`, or by default the projections of every
        decoder layer, checked to cover each of the layers' 2-D weights (`families.check_coverage`)."""
        if patterns:
            return select(self.names, patterns)
        names = select(self.names, ["re:" + self.family.projections])
        families.check_coverage({n: info.shape for n, info in self.infos.items()}, names, self.family, str(self.path))
        return names


def layer_and_module(name: str) -> tuple[int, str]:
    """(decoder layer or -1, short module name): (3, 'q_proj') for model.layers.3.self_attn.q_proj.weight."""
    match = DECODER_LAYER.match(name)
    stem = re.sub(r"\.(weight|bias)$", "", name)
    return (int(match.group(1)) if match else -1), stem.rsplit(".", 1)[-1]


def pattern_matcher(pattern: str) -> Callable[[str], bool]:
    """A tensor-name test from a pattern.

    `re:...` is a regular expression (searched), `glob:...` a shell glob (whole name). Without a prefix,
    a pattern with `*` or `?` and none of `\\^$+(){}|` is a glob, anything else a regular expression.
    """
    if pattern.startswith("re:"):
        regex = re.compile(pattern[3:])
        return lambda name: regex.search(name) is not None
    if pattern.startswith("glob:"):
        glob = pattern[5:]
        return lambda name: fnmatch.fnmatchcase(name, glob)
    if any(c in pattern for c in "*?") and not any(c in pattern for c in "\\^$+(){}|"):
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    return pattern_matcher("re:" + pattern)


def select(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The names matching any pattern, in their given order.

    Every pattern must match something: a typo must not silently shrink an analysis.
    """
    names = list(names)
    chosen: set[str] = set()
    for pattern in patterns:
        matcher = pattern_matcher(pattern)
        hits = {name for name in names if matcher(name)}
        if not hits:
            raise WeightsError(f"pattern {pattern!r} matches no tensor (e.g. {names[:3]})")
        chosen |= hits
    return [name for name in names if name in chosen]


def check_matching(a: ModelWeights, b: ModelWeights, names: Iterable[str]) -> None:
    """Both models hold every named tensor, with the same shape."""
    for name in names:
        for model in (a, b):
            if name not in model:
                raise WeightsError(f"tensor {name!r} is missing from {model.path}")
        if a.info(name).shape != b.info(name).shape:
            raise WeightsError(
                f"tensor {name!r} has shape {list(a.info(name).shape)} in {a.path} "
                f"but {list(b.info(name).shape)} in {b.path}"
            )


class SafetensorsWriter:
    """Writes a safetensors file tensor by tensor, in the declared order, without holding them all.

    The header (names, dtypes, shapes, offsets) is fixed up front from `entries`; each `write` checks
    that the tensor is the next one declared, with that dtype and shape. `close` fails if any is missing.
    """

    def __init__(self, path: str | os.PathLike, entries: Sequence[TensorInfo], metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.entries = list(entries)
        header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
        offset = 0
        for entry in self.entries:
            size = int(np.prod(entry.shape, dtype=np.int64)) * DTYPES[entry.dtype].itemsize
            header[entry.name] = {
                "dtype": entry.dtype,
                "shape": list(entry.shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.handle = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self.handle.write(struct.pack("<Q", len(raw)) + raw)
        self.position = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self.position >= len(self.entries) or self.entries[self.position].name != name:
            raise WeightsError(f"{self.path}: tensor {name!r} written out of the declared order")
        entry = self.entries[self.position]
        if DTYPE_CODES.get(tensor.dtype) != entry.dtype or tuple(tensor.shape) != entry.shape:
            raise WeightsError(
                f"{self.path}: tensor {name!r} is {tensor.dtype} {list(tensor.shape)}, "
                f"declared {entry.dtype} {list(entry.shape)}"
            )
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        self.handle.write(data.data)
        self.position += 1

    def close(self) -> None:
        self.handle.close()
        if self.position != len(self.entries):
            missing = [entry.name for entry in self.entries[self.position :]]
            raise WeightsError(f"{self.path}: {len(missing)} declared tensors never written, e.g. {missing[:3]}")

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.handle.close()
