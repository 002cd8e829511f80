"""Spectral comparison of two checkpoints, matrix by matrix, streamed: how far do SFT and RL move weights?

For every matched weight W_A, W_B (thin SVDs U Σ Vᵀ, float32) the tidy table records
- singular values of A and B and their relative drift |σ_B − σ_A| / σ_A per index;
- principal angles between the top-k left (U) and right (V) singular subspaces,
  θ_i = arccos σ_i(U_a[:, :k]ᵀ U_b[:, :k]), for k at fractions of the rank: their mean and max, and the
  projection distance ‖P_a − P_b‖_F / √(2k) = √(mean_i sin² θ_i), which lies in [0, 1] (computed from the
  angles by the identity ‖P_a − P_b‖_F² = 2 Σ sin² θ_i, without forming the projectors);
- alignment |⟨u_i^A, u_i^B⟩| per index (same for v), its means over the top 10%, the bulk and the bottom
  10% of indices, and the mean best-match alignment mean_i max_j |⟨u_i^A, u_j^B⟩|;
- the mean principal angle between A's and B's singular subspaces of the top, the middle and the bottom
  10% of indices (`subspace_angle_{side}_{top,middle,bottom}_deg`): unlike index-matched alignment, it
  does not count vectors of near-equal singular values that trade places within a block as rotation;
- the energy split of ΔW = W_B − W_A in A's basis, M = U_aᵀ ΔW V_a: the diagonal (magnitude) share
  Σ M_ii² / ‖M‖_F² and the off-diagonal (rotation) share (the two sum to 1). M sees only the part of ΔW
  inside the span of A's r = min(m, n) singular vectors; `energy_outside_share` = 1 − ‖M‖_F² / ‖ΔW‖_F²
  is the rest (for an m×n matrix with m ≠ n, directions of the longer side that A's thin basis lacks:
  about 1 − r/max(m, n) of a random update), reported so that the two shares are not over-read;
- WeightWatcher-style cheap columns: spectral norm, Frobenius norm, stable rank ‖W‖_F² / ‖W‖_2² of A and B.

Table columns: layer, module, name, index_or_k, metric, value (index_or_k: the singular index for
per-index metrics, k for per-k metrics, -1 for scalars). `summarize`, `summary_by` and `summary_row`
reduce tables to their headline numbers, one row per pair for the summary of many pairs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sftrl.io import atomic_path
from sftrl.spectral.svd import Svd, SvdCache, default_device, singular_values, thin_svd
from sftrl.spectral.weights import ModelWeights, check_matching, layer_and_module

COLUMNS = ["layer", "module", "name", "index_or_k", "metric", "value"]
DEFAULT_K_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.2, 0.5, 1.0)
EDGE_FRACTION = 0.1  # "top" and "bottom" alignment: the first and last 10% of indices


def k_values(rank: int, fractions: Sequence[float]) -> list[tuple[float, int]]:
    """(fraction, k) with k = round(fraction · rank), at least 1 and at most the rank."""
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"k fraction {fraction} is outside (0, 1]")
    return [(f, min(rank, max(1, math.floor(f * rank + 0.5)))) for f in fractions]


def principal_angles(cross: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) from the k×k product of two orthonormal bases, Q_aᵀ Q_b."""
    return torch.arccos(singular_values(cross).clamp(0.0, 1.0)).sort().values


class TidyRows:
    """Column buffers for the tidy table: one `add` per metric block of one matrix, one frame at the end."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, np.ndarray, str, np.ndarray]] = []

    def add(self, name: str, metric: str, index, value) -> None:
        value = np.atleast_1d(np.asarray(value.cpu() if torch.is_tensor(value) else value, dtype=np.float64))
        index = np.broadcast_to(np.asarray(index, dtype=np.int64), value.shape)
        self.blocks.append((name, index, metric, value))

    def scalar(self, name: str, metric: str, value: float | torch.Tensor) -> None:
        self.add(name, metric, -1, float(value))

    def frame(self) -> pd.DataFrame:
        if not self.blocks:
            return pd.DataFrame(
                {c: pd.Series(dtype=t) for c, t in zip(COLUMNS, [int, str, str, int, str, float], strict=False)}
            )
        sizes = [len(block[3]) for block in self.blocks]
        names = np.repeat([block[0] for block in self.blocks], sizes)
        layers, modules = zip(*(layer_and_module(block[0]) for block in self.blocks), strict=False)
        return pd.DataFrame(
            {
                "layer": np.repeat(np.asarray(layers, dtype=np.int64), sizes),
                "module": np.repeat(modules, sizes),
                "name": names,
                "index_or_k": np.concatenate([block[1] for block in self.blocks]),
                "metric": np.repeat([block[2] for block in self.blocks], sizes),
                "value": np.concatenate([block[3] for block in self.blocks]),
            }
        )


def _edge_means(rows: TidyRows, name: str, prefix: str, values: torch.Tensor) -> None:
    rank = len(values)
    edge = max(1, math.floor(EDGE_FRACTION * rank + 0.5))
    rows.scalar(name, f"{prefix}_top", values[:edge].mean())
    bulk = values[edge : rank - edge]
    rows.scalar(name, f"{prefix}_bulk", bulk.mean() if len(bulk) else float("nan"))
    rows.scalar(name, f"{prefix}_bottom", values[rank - edge :].mean())


def _edge_subspace_rows(rows: TidyRows, name: str, side: str, cross: torch.Tensor) -> None:
    """Mean principal angle of the top, middle and bottom EDGE_FRACTION blocks of the cross product."""
    rank = cross.shape[0]
    k = max(1, math.floor(EDGE_FRACTION * rank + 0.5))
    middle = (rank - k) // 2
    for part, start in (("top", 0), ("middle", middle), ("bottom", rank - k)):
        block = cross[start : start + k, start : start + k]
        rows.scalar(name, f"subspace_angle_{side}_{part}_deg", torch.rad2deg(principal_angles(block).mean()))


def _subspace_rows(rows: TidyRows, name: str, side: str, cross: torch.Tensor, fractions: Sequence[float]) -> None:
    """Angle metrics at each k from the full cross product of two bases (top-k blocks are its corners)."""
    for fraction, k in k_values(cross.shape[0], fractions):
        angles = principal_angles(cross[:k, :k])
        rows.add(name, "k_fraction", k, fraction)
        rows.add(name, f"angle_{side}_mean_deg", k, torch.rad2deg(angles.mean()))
        rows.add(name, f"angle_{side}_max_deg", k, torch.rad2deg(angles.max()))
        rows.add(name, f"proj_dist_{side}", k, torch.sin(angles).square().mean().sqrt())


def _norm_rows(rows: TidyRows, name: str, suffix: str, s: torch.Tensor) -> None:
    fro2 = s.square().sum()
    rows.scalar(name, f"spectral_norm_{suffix}", s[0])
    rows.scalar(name, f"fro_norm_{suffix}", fro2.sqrt())
    rows.scalar(name, f"stable_rank_{suffix}", fro2 / s[0].square() if s[0] > 0 else float("nan"))


def compare_matrices(
    rows: TidyRows,
    name: str,
    wa: torch.Tensor,
    wb: torch.Tensor,
    svd_a: Svd,
    svd_b: Svd,
    fractions: Sequence[float],
) -> None:
    """All pair metrics of one matrix (see the module docstring), appended to `rows`."""
    sa, sb = svd_a.s, svd_b.s
    rank = len(sa)
    index = np.arange(rank)
    rows.scalar(name, "rank", rank)
    rows.add(name, "sigma_a", index, sa)
    rows.add(name, "sigma_b", index, sb)
    drift = torch.where(sa > 0, (sb - sa).abs() / sa, torch.full_like(sa, float("nan")))
    rows.add(name, "drift", index, drift)
    rows.scalar(name, "drift_mean", drift.nanmean())
    rows.scalar(name, "drift_median", drift.nanmedian())
    rows.scalar(name, "drift_max", drift.nan_to_num(0).max())

    for side, cross in (("left", svd_a.u.T @ svd_b.u), ("right", svd_a.vh @ svd_b.vh.T)):
        align = cross.diagonal().abs()
        rows.add(name, f"align_{side}", index, align)
        _edge_means(rows, name, f"align_{side}", align)
        rows.scalar(name, f"best_align_{side}_mean", cross.abs().max(dim=1).values.mean())
        _subspace_rows(rows, name, side, cross, fractions)
        _edge_subspace_rows(rows, name, side, cross)

    delta = wb - wa
    delta2 = delta.square().sum()
    m = svd_a.u.T @ delta @ svd_a.vh.T
    total = m.square().sum()
    diag = m.diagonal().square().sum()
    rows.scalar(name, "delta_fro", delta2.sqrt())
    rows.scalar(name, "delta_rel", delta2.sqrt() / sa.square().sum().sqrt())
    rows.scalar(name, "energy_diag_share", diag / total if total > 0 else float("nan"))
    rows.scalar(name, "energy_rotation_share", (total - diag) / total if total > 0 else float("nan"))
    rows.scalar(name, "energy_outside_share", (1 - total / delta2).clamp(min=0) if delta2 > 0 else float("nan"))
    _norm_rows(rows, name, "a", sa)
    _norm_rows(rows, name, "b", sb)


def analyse_pair(
    dir_a: str | os.PathLike,
    dir_b: str | os.PathLike,
    patterns: Sequence[str] | None = None,
    k_fractions: Sequence[float] = DEFAULT_K_FRACTIONS,
    cache: SvdCache | None = None,
) -> pd.DataFrame:
    """The tidy spectral table of model B against model A, reading one tensor of each at a time."""
    a, b = ModelWeights(dir_a), ModelWeights(dir_b)
    names = a.analysed(patterns)
    check_matching(a, b, names)
    cache = cache or SvdCache()
    rows = TidyRows()
    for name in names:
        wa = a.get(name).to(cache.device, torch.float32)
        wb = b.get(name).to(cache.device, torch.float32)
        compare_matrices(rows, name, wa, wb, cache.get(a, name, wa), cache.get(b, name, wb), k_fractions)
    return rows.frame()


def compare_updates(
    base_dir: str | os.PathLike,
    mid_dir: str | os.PathLike,
    end_dir: str | os.PathLike,
    patterns: Sequence[str] | None = None,
    k_fractions: Sequence[float] = DEFAULT_K_FRACTIONS,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """ΔW_1 = W_mid − W_base against ΔW_2 = W_end − W_mid (e.g. ΔW_sft against ΔW_rl), per matrix.

    Records the cosine similarity of the flattened updates, their norms (absolute and relative to the
    weight they start from), their singular values, and principal angles between their top-k singular
    subspaces; same tidy format as `analyse_pair`.
    """
    models = [ModelWeights(d) for d in (base_dir, mid_dir, end_dir)]
    names = models[0].analysed(patterns)
    check_matching(models[0], models[1], names)
    check_matching(models[0], models[2], names)
    device = torch.device(device) if device is not None else default_device()
    rows = TidyRows()
    for name in names:
        w0, w1, w2 = (m.get(name).to(device, torch.float32) for m in models)
        d1, d2 = w1 - w0, w2 - w1
        n1, n2 = d1.norm(), d2.norm()
        rows.scalar(name, "update_norm_1", n1)
        rows.scalar(name, "update_norm_2", n2)
        rows.scalar(name, "update_rel_norm_1", n1 / w0.norm())
        rows.scalar(name, "update_rel_norm_2", n2 / w1.norm())
        rows.scalar(name, "update_cosine", (d1 * d2).sum() / (n1 * n2) if n1 > 0 and n2 > 0 else float("nan"))
        del w0, w1, w2
        svd_1, svd_2 = thin_svd(d1), thin_svd(d2)
        index = np.arange(len(svd_1.s))
        rows.scalar(name, "rank", len(index))
        rows.add(name, "sigma_1", index, svd_1.s)
        rows.add(name, "sigma_2", index, svd_2.s)
        _subspace_rows(rows, name, "left", svd_1.u.T @ svd_2.u, k_fractions)
        _subspace_rows(rows, name, "right", svd_1.vh @ svd_2.vh.T, k_fractions)
    return rows.frame()


def write_table(table: pd.DataFrame, path: str | os.PathLike, meta: Mapping | None = None) -> None:
    """Parquet, atomically; `meta` (names, inputs, provenance) goes into the file's key-value metadata."""
    arrow = pa.Table.from_pandas(table[COLUMNS], preserve_index=False)
    if meta:
        arrow = arrow.replace_schema_metadata(
            {**(arrow.schema.metadata or {}), b"sftrl": json.dumps(meta, default=str)}
        )
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


def read_meta(path: str | os.PathLike) -> dict:
    raw = (pq.read_schema(path).metadata or {}).get(b"sftrl")
    return json.loads(raw) if raw else {}


def _values(table: pd.DataFrame, metric: str) -> pd.Series:
    return table.loc[table["metric"] == metric, "value"]


def per_k_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of a per-k metric with each row's k fraction attached (k differs between matrices)."""
    fractions = table.loc[table["metric"] == "k_fraction", ["name", "index_or_k", "value"]]
    fractions = fractions.rename(columns={"value": "k_fraction"})
    rows = table.loc[table["metric"] == metric]
    return rows.merge(fractions, on=["name", "index_or_k"], how="left")


def summarize(table: pd.DataFrame) -> dict[str, float]:
    """The headline numbers of one pair table.

    drift_median: median relative drift over every singular value of every matrix; angle_{side}_deg@f:
    mean over matrices of the mean principal angle at k fraction f; align_*: mean over matrices of the
    top/bulk/bottom alignment; rotation_share: mean over matrices of the off-diagonal energy share.
    Pair tables from `compare_updates` give the angle entries and update_cosine.
    """
    summary: dict[str, float] = {"matrices": float(table["name"].nunique())}
    drift = _values(table, "drift")
    if len(drift):
        summary["drift_median"] = float(np.nanmedian(drift))
    for side in ("left", "right"):
        per_k = per_k_rows(table, f"angle_{side}_mean_deg")
        for fraction, group in per_k.groupby("k_fraction"):
            summary[f"angle_{side}_deg@{fraction:g}"] = float(group["value"].mean())
    for metric in (
        "align_left_top",
        "align_left_bulk",
        "align_left_bottom",
        "align_right_top",
        "align_right_bulk",
        "align_right_bottom",
        "update_cosine",
    ):
        values = _values(table, metric)
        if len(values):
            summary[metric] = float(values.mean())
    shares = _values(table, "energy_rotation_share")
    if len(shares):
        summary["rotation_share"] = float(shares.mean())
    return summary


def summary_by(table: pd.DataFrame, column: str = "module") -> pd.DataFrame:
    """`summarize` for each value of `column` (e.g. per module or per layer), one row each."""
    return pd.DataFrame(
        [{column: key, **summarize(group)} for key, group in table.groupby(column, sort=True)]
    ).set_index(column)


# --- the summary of many pairs ------------------------------------------------------------------------

SUMMARY_KINDS = ("base_to_sft", "base_to_rl", "peak_to_later", "sft_vs_rl")
SUMMARY_KEYS = ("kind", "a", "b")
DRIFT_PREFIX = "drift_median_"


def summary_row(kind: str, a: str, b: str, table: pd.DataFrame) -> dict[str, object]:
    """One pair's headline numbers (`summarize`) with its kind and models, plus the median drift per module.

    kind: base_to_sft, base_to_rl, peak_to_later (B against A), or sft_vs_rl (a `compare_updates` table
    of ΔW_sft = A − base against ΔW_rl = B − A, with A the SFT checkpoint the RL model B started from).
    """
    if kind not in SUMMARY_KINDS:
        raise ValueError(f"unknown pair kind {kind!r}; expected one of {SUMMARY_KINDS}")
    row: dict[str, object] = {"kind": kind, "a": a, "b": b, **summarize(table)}
    drift = table.loc[table["metric"] == "drift"]
    for module, group in drift.groupby("module", sort=True):
        row[DRIFT_PREFIX + str(module)] = float(np.nanmedian(group["value"]))
    return row


def summary_frame(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """Rows of `summary_row` as one table: kind, a, b, then every metric any row has (blank where absent)."""
    columns: list[str] = list(SUMMARY_KEYS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    return pd.DataFrame(list(rows), columns=columns)


def write_summary(summary: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
