"""Thin SVDs of weight matrices, and a disk cache of them shared by spectral analysis and restoration.

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

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sftrl.io import atomic_path
from sftrl.spectral.weights import ModelWeights, WeightsError


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

    def entry(self, weights: ModelWeights, name: str, variant: str = "") -> Path | None:
        if self.root is None:
            return None
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name) + (f"@{variant}" if variant else "")
        return self.root / weights.fingerprint / (stem + ".safetensors")

    def get(self, weights: ModelWeights, name: str, tensor: torch.Tensor | None = None, variant: str = "") -> Svd:
        """The SVD of `name` in `weights` on this cache's device; `tensor`, if given, saves a re-read. A
        `variant` (e.g. "float16": the tensor rounded through float16, given as `tensor`) is kept apart."""
        if variant and tensor is None:
            raise ValueError(f"the {variant} variant of {name!r} needs its tensor")
        path = self.entry(weights, name, variant)
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
