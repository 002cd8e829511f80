"""How close two models' representations of the same prompts are, with paired bootstrap intervals.

Each prompt gives one pooled hidden-state vector per model (`features.py`). Set-level metrics compare
the two clouds of vectors: linear CKA, MMD² under an RBF kernel, the Fréchet distance between Gaussians
fitted to them. Per-prompt metrics compare the two models prompt by prompt: the cosine of the two
vectors, and the Jensen–Shannon divergence and top-k overlap of the next-token distributions; their value
is the mean over prompts.

Everything set-level is computed from n×n Gram matrices of the full sample, so a bootstrap draw (the
same resampled prompts for every model) only indexes and centres them: no feature matrix is rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.pool import Pool

import numpy as np
from scipy import stats
from scipy.spatial.distance import pdist
from threadpoolctl import threadpool_limits


@dataclass(frozen=True)
class Metric:
    """One way of comparing a model with the reference; `higher_is_closer` orients the recovery Δ."""

    name: str
    label: str
    higher_is_closer: bool
    per_prompt: bool


# The registry of metrics, in the table's and the figure's order.
METRICS = {
    m.name: m
    for m in (
        Metric("cosine", "mean cosine (hidden)", higher_is_closer=True, per_prompt=True),
        Metric("cka", "linear CKA (hidden)", higher_is_closer=True, per_prompt=False),
        Metric("mmd2", "MMD² RBF (hidden)", higher_is_closer=False, per_prompt=False),
        Metric("frechet", "Fréchet distance (hidden)", higher_is_closer=False, per_prompt=False),
        Metric("js", "Jensen–Shannon (next token, bits)", higher_is_closer=False, per_prompt=True),
        Metric("topk", "top-k overlap (next token)", higher_is_closer=True, per_prompt=True),
    )
}
SET_METRICS = tuple(name for name, m in METRICS.items() if not m.per_prompt)


def median_bandwidth(x: np.ndarray) -> float:
    """The median heuristic: σ = the median Euclidean distance between distinct rows of `x`."""
    distances = pdist(np.asarray(x, dtype=np.float64))
    positive = distances[distances > 0]
    if positive.size == 0:
        raise ValueError("the median heuristic needs at least two distinct vectors")
    return float(np.median(positive))


def rbf_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    """k(x, y) = exp(−‖x − y‖² / 2σ²), every row of `x` against every row of `y`."""
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.exp(-np.maximum(sq, 0.0) / (2.0 * bandwidth**2))


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float, unbiased: bool = False) -> float:
    """MMD² between the samples `x` and `y`; biased (V-statistic, 0 for identical sets) by default."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    kxx, kyy, kxy = rbf_kernel(x, x, bandwidth), rbf_kernel(y, y, bandwidth), rbf_kernel(x, y, bandwidth)
    if not unbiased:
        return float(kxx.mean() + kyy.mean() - 2.0 * kxy.mean())
    n, m = len(x), len(y)
    within = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.mean())


def _centre(gram: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Q G Qᵀ with Q = I − 1wᵀ: the Gram matrix of rows centred on their w-weighted mean."""
    left = w @ gram
    right = gram @ w
    return gram - left[None, :] - right[:, None] + w @ right


@dataclass(frozen=True)
class Grams:
    """The kernels of a reference sample X and a sample Y of the same prompts (row i: prompt i).

    A bootstrap resample repeats prompts; with counts c over the u distinct prompts drawn, every metric of
    the n resampled rows is a c-weighted one over u rows (the resampled Gram matrix is P G Pᵀ with PᵀP =
    diag(c)), so a draw costs a u×u problem, u ≈ 0.63 n.
    """

    xx: np.ndarray  # X Xᵀ
    yy: np.ndarray  # Y Yᵀ
    xy: np.ndarray  # X Yᵀ
    kxx: np.ndarray  # RBF kernels, one bandwidth for all
    kyy: np.ndarray
    kxy: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, bandwidth: float) -> Grams:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"the two samples must have the same shape, got {x.shape} and {y.shape}")
        return cls(x @ x.T, y @ y.T, x @ y.T, *(rbf_kernel(a, b, bandwidth) for a, b in ((x, x), (y, y), (x, y))))

    def set_metrics(self, idx: np.ndarray | None = None) -> dict[str, float]:
        """CKA, MMD² and Fréchet distance of the prompts `idx` (repeats allowed; None: all of them)."""
        idx = np.arange(len(self.xx)) if idx is None else np.asarray(idx)
        n = len(idx)
        keep, counts = np.unique(idx, return_counts=True)
        w = counts / n
        pick = np.ix_(keep, keep)
        xx, yy, xy = self.xx[pick], self.yy[pick], self.xy[pick]
        cx, cy, cxy = _centre(xx, w), _centre(yy, w), _centre(xy, w)
        weights = np.outer(w, w)
        hsic_xx, hsic_yy = float((weights * cx * cx).sum()), float((weights * cy * cy).sum())
        cka = (
            float((weights * cx * cy).sum()) / np.sqrt(hsic_xx * hsic_yy)
            if hsic_xx > 0 and hsic_yy > 0
            else float("nan")
        )
        # Fréchet: ‖μx − μy‖² + tr Σx + tr Σy − 2 tr (Σx^½ Σy Σx^½)^½, where the last trace is the nuclear
        # norm of Xc Ycᵀ / (n − 1): a u×u problem whatever the hidden size (eigvalsh of M Mᵀ: 1.5x svd's speed).
        mean_gap = float(w @ (xx + yy - xy - xy.T) @ w)
        root = np.sqrt(counts)
        scaled = root[:, None] * cxy * root[None, :]
        trace_term = np.sqrt(np.clip(np.linalg.eigvalsh(scaled @ scaled.T), 0.0, None)).sum()  # Σ singular values
        frechet = mean_gap + (counts @ np.diag(cx) + counts @ np.diag(cy) - 2.0 * trace_term) / (n - 1)
        return {
            "cka": cka,
            "mmd2": float(w @ (self.kxx[pick] + self.kyy[pick] - 2.0 * self.kxy[pick]) @ w),
            "frechet": max(float(frechet), 0.0),
        }


def cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two samples of the same prompts (1 for identical sets; invariant to rotation and scale)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return Grams.of(x, y, bandwidth=1.0).set_metrics()["cka"]


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two samples: ‖μx − μy‖² + tr(Σx + Σy − 2 (Σx Σy)^½),
    where tr (Σx Σy)^½ sums the square roots of the (real, non-negative) eigenvalues of Σx Σy."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sx, sy = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    roots = np.sqrt(np.clip(np.linalg.eigvals(sx @ sy).real, 0.0, None)).sum()
    distance = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(sx) + np.trace(sy) - 2.0 * roots
    return max(float(distance), 0.0)


def cosine_per_prompt(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine of each prompt's two vectors."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    return (x * y).sum(1) / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class Comparison:
    """One model against the reference on one split: per-prompt values and the set-level kernels."""

    per_prompt: Mapping[str, np.ndarray]  # metric -> value per prompt (cosine, js, topk)
    grams: Grams

    @classmethod
    def of(
        cls, reference: np.ndarray, other: np.ndarray, next_token: Mapping[str, np.ndarray], bandwidth: float
    ) -> Comparison:
        per_prompt = {
            "cosine": cosine_per_prompt(reference, other),
            **{k: np.asarray(v) for k, v in next_token.items()},
        }
        return cls(per_prompt, Grams.of(reference, other, bandwidth))

    def values(self, idx: np.ndarray | None = None) -> dict[str, float]:
        """Every metric on the prompts `idx` (None: all)."""
        values = {k: float(np.mean(v if idx is None else v[idx])) for k, v in self.per_prompt.items()}
        values.update(self.grams.set_metrics(idx))
        return {name: values[name] for name in METRICS}


def closeness(metric: str, value: np.ndarray | float) -> np.ndarray:
    """A value oriented so that larger is closer to the reference."""
    return np.asarray(value) if METRICS[metric].higher_is_closer else -np.asarray(value)


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def paired_bootstrap(
    comparisons: Mapping[str, Comparison],
    deltas: Sequence[tuple[str, str]],
    draws: int,
    seed: int,
    level: float = 0.95,
    workers: int = 1,
) -> tuple[dict[tuple[str, str], Interval], dict[tuple[str, str], Interval]]:
    """BCa intervals (`scipy.stats.bootstrap`) of every metric of every comparison, and of the recovery Δ
    of each (sft_end, RL) pair of comparison names, all from the same resampled prompts.

    Δ = closeness(RL) − closeness(sft_end): > 0 where the RL model is closer to the reference. BCa rather
    than the plain percentile interval because MMD² and the Fréchet distance are biased upward on a
    resample with repeated prompts, which would push a percentile interval off its own estimate.
    `workers` processes share the resamples, each computing whole resamples with one BLAS thread, so the
    digits do not depend on how many there are or on the job's threads.
    Returns ({(name, metric): interval}, {(RL name, metric): Δ interval}).
    """
    names = list(comparisons)
    statistic = _Statistic(comparisons, names, list(deltas))
    n = len(next(iter(comparisons.values())).grams.xx)
    options = {"n_resamples": draws, "confidence_level": level, "method": "BCa", "rng": np.random.default_rng(seed)}
    with threadpool_limits(1), _ResamplePool(statistic, workers) as batched:  # one BLAS thread: the same digits
        estimate = statistic(np.arange(n))
        low, high = stats.bootstrap((np.arange(n),), batched, vectorized=True, **options).confidence_interval
    intervals = [Interval(float(v), float(lo), float(hi)) for v, lo, hi in zip(estimate, low, high, strict=True)]
    keys = [(name, metric) for name in names for metric in METRICS]
    delta_keys = [(rl, metric) for _, rl in deltas for metric in METRICS]
    return dict(zip(keys, intervals[: len(keys)], strict=True)), dict(
        zip(delta_keys, intervals[len(keys) :], strict=True)
    )


@dataclass(frozen=True)
class _Statistic:
    """Every metric of every comparison, then every Δ, on one resample of prompt indices."""

    comparisons: Mapping[str, Comparison]
    names: list[str]
    deltas: list[tuple[str, str]]

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        values = {name: self.comparisons[name].values(idx) for name in self.names}
        out = [values[name][metric] for name in self.names for metric in METRICS]
        out += [closeness(m, values[rl][m]) - closeness(m, values[end][m]) for end, rl in self.deltas for m in METRICS]
        return np.array(out, dtype=np.float64)


_POOL_STATISTIC: _Statistic | None = None  # a worker's statistic, inherited when the pool forks


def _resamples(rows: np.ndarray) -> np.ndarray:
    assert _POOL_STATISTIC is not None
    return np.stack([_POOL_STATISTIC(row) for row in rows])


class _ResamplePool:
    """The statistic over a batch of resamples (scipy's vectorized form: resamples along the last axis,
    statistics first), computed resample by resample in `workers` forked processes."""

    def __init__(self, statistic: _Statistic, workers: int):
        self.statistic, self.workers = statistic, workers
        self.pool: Pool | None = None

    def __enter__(self):
        global _POOL_STATISTIC
        if self.workers > 1:
            _POOL_STATISTIC = self.statistic
            self.pool = get_context("fork").Pool(self.workers, initializer=threadpool_limits, initargs=(1,))
        return self

    def __exit__(self, *exc) -> None:
        global _POOL_STATISTIC
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        _POOL_STATISTIC = None

    def __call__(self, idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.moveaxis(np.asarray(idx), axis, -1)
        rows = idx.reshape(-1, idx.shape[-1])
        if self.pool is None:
            values = np.stack([self.statistic(row) for row in rows])
        else:
            chunks = np.array_split(rows, self.workers * 4)
            values = np.concatenate(self.pool.map(_resamples, [c for c in chunks if len(c)]))
        # [statistic, resample] as a view of [resample, statistic], the layout scipy's own loop gives: numpy
        # sums a strided axis in another order than a contiguous one, and the intervals keep their digits
        return values.T.reshape(-1, *idx.shape[:-1])


def win_rate(metric: str, end: np.ndarray | None, rl: np.ndarray | None) -> float | None:
    """Share of prompts on which the RL model is closer to the reference than sft_end (ties count half);
    None for a set-level metric, which has no per-prompt value."""
    if not METRICS[metric].per_prompt or end is None or rl is None:
        return None
    gain = closeness(metric, rl) - closeness(metric, end)
    return float(((gain > 0).sum() + 0.5 * (gain == 0).sum()) / len(gain))


def check_same_prompts(uids: Sequence[Sequence[str]]) -> None:
    """Every comparison of a split must cover the same prompts in the same order, or nothing is paired."""
    first = list(uids[0])
    for other in uids[1:]:
        if list(other) != first:
            raise ValueError("the compared feature files cover different prompts; rebuild them from one eval set")
