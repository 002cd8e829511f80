"""Streaming access to the weights of a Hugging Face model directory, and a disk cache of their SVDs.

Spectral analysis and restoration must run on nodes with less RAM than three copies of a 7B/11B model,
so nothing here loads a model: tensor names, shapes and dtypes come from the safetensors headers, and
tensors are read one at a time (`safe_open`, framework "pt" so bf16 is read as bf16). Output is written
the same way, by `SafetensorsWriter`, which streams one tensor after another into a file whose header
is known in advance.

The SVD routine was chosen by measurement: float32 thin SVD, CPU milliseconds (process time, so the
other jobs sharing these 2 Haswell cores do not count), one BLAS thread per library, best of 3:

    shape         thin_svd   scipy gesdd   torch.linalg.svd   numpy   scipy gesvd
    256 x 768         10          13              15             22          69
    768 x 256         11          10              10             18          65
    1024 x 1024      229         219             267            371        8982
    1024 x 4096      505         801            1379           1326           -
    4096 x 1024      547         519             574           1007           -

`thin_svd` is scipy's gesdd, given a wide C-order matrix as its (tall) transpose: 1.6x faster than
plain gesdd and 2.7x faster than torch (MKL) on the wide 1024 x 4096 shape of a down projection, and
on par with torch elsewhere. gesvd is 6-40x slower and never used. On a GPU `torch.linalg.svd`
runs on cuda.
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
import scipy.linalg
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sftrl.io import atomic_path
from sftrl.restoration.spec import tied_embeddings

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# Decoder layers of Qwen2/Llama (`model.layers.3.`) and of Llama-3.2-Vision's text tower
# (`language_model.model.layers.3.`, or `model.language_model.layers.3.` as transformers 5 saves it).
# Anchored at the start so the vision tower's `vision_model.transformer.layers.3.` never matches.
DECODER_LAYER = re.compile(r"^(?:model\.)?(?:language_model\.)?(?:model\.)?layers\.(\d+)\.")
PROJECTIONS = "re:" + DECODER_LAYER.pattern + r"(?:self_attn|mlp)\.(?:q|k|v|o|gate|up|down)_proj\.weight$"
DEFAULT_PATTERNS: tuple[str, ...] = (PROJECTIONS,)
EMBEDDINGS = re.compile(r"^(?:model\.)?(?:language_model\.)?(?:model\.)?embed_tokens\.weight$")
LM_HEAD = re.compile(r"^(?:language_model\.)?lm_head\.weight$")

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
        """Whether the LM head shares the embedding matrix (Hugging Face's default when unset)."""
        return tied_embeddings(self.config)


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


def select(names: Iterable[str], patterns: Sequence[str] | None = None) -> list[str]:
    """The names matching any pattern (default: the decoder projections), in their given order.

    Every pattern must match something: a typo must not silently shrink an analysis.
    """
    names = list(names)
    patterns = tuple(patterns) if patterns else DEFAULT_PATTERNS
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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Svd:
    """Thin SVD W = U diag(S) Vh, float32, singular values descending."""

    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor

    def to(self, device: torch.device | str) -> Svd:
        return Svd(self.u.to(device), self.s.to(device), self.vh.to(device))


def thin_svd(w: torch.Tensor) -> Svd:
    """Thin float32 SVD: torch on a GPU, scipy's gesdd on a CPU (see the timings above)."""
    w = w.float()
    if w.is_cuda:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        return Svd(u, s, vh)
    matrix = w.numpy()
    wide = matrix.shape[0] < matrix.shape[1]
    # LAPACK is faster on a C-order matrix that is tall, so a wide one is decomposed as its transpose.
    u, s, vh = scipy.linalg.svd(
        matrix.T if wide else matrix, full_matrices=False, lapack_driver="gesdd", check_finite=False
    )
    if wide:
        u, vh = vh.T, u.T
    # C order, as a cache entry reads back: the same layout gives the same rounding downstream.
    return Svd(*(torch.from_numpy(np.ascontiguousarray(x)) for x in (u, s, vh)))


def singular_values(m: torch.Tensor) -> torch.Tensor:
    """Singular values only (for principal angles), by the same routine choice as `thin_svd`."""
    m = m.float()
    if m.is_cuda:
        return torch.linalg.svdvals(m)
    return torch.from_numpy(scipy.linalg.svd(m.numpy(), compute_uv=False, lapack_driver="gesdd", check_finite=False))


class SvdCache:
    """Thin SVDs of model weights, computed once per (weights, tensor) and kept on disk under `root`.

    Entries live at root/{fingerprint}/{tensor}.safetensors, so analysis and restoration of the same
    checkpoint share them and a rewritten checkpoint never reuses stale ones. With `root=None` nothing
    is stored and every request computes. `computed` and `hits` count what happened.
    """

    def __init__(self, root: str | os.PathLike | None = None, device: torch.device | str | None = None):
        self.root = Path(root) if root is not None else None
        self.device = torch.device(device) if device is not None else default_device()
        self.computed = 0
        self.hits = 0

    def entry(self, weights: ModelWeights, name: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / weights.fingerprint / (re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".safetensors")

    def get(self, weights: ModelWeights, name: str, tensor: torch.Tensor | None = None) -> Svd:
        """The SVD of `name` in `weights` on this cache's device; `tensor`, if given, saves a re-read."""
        path = self.entry(weights, name)
        if path is not None and path.is_file():
            with safe_open(path, framework="pt") as handle:
                # clone: tensors read from the file can be unaligned, and BLAS then rounds differently
                # from the aligned arrays `thin_svd` returns; a hit must give the numbers a miss gives.
                svd = Svd(*(handle.get_tensor(k).clone() for k in ("u", "s", "vh")))
            self.hits += 1
            return svd.to(self.device)
        matrix = tensor if tensor is not None else weights.get(name)
        if matrix.ndim != 2:
            raise WeightsError(f"tensor {name!r} in {weights.path} is not a matrix (shape {list(matrix.shape)})")
        svd = thin_svd(matrix.to(self.device))
        self.computed += 1
        if path is not None:
            with atomic_path(path) as tmp:
                save_file(
                    {"u": svd.u.cpu().contiguous(), "s": svd.s.cpu(), "vh": svd.vh.cpu().contiguous()},
                    tmp,
                    metadata={"tensor": name, "model": str(weights.path)},
                )
        return svd


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
