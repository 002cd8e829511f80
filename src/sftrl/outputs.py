"""Result tables and figures as every stage writes them: CSV with a fixed column order (and a Parquet copy
where a table is read by pandas), and each figure as a
PNG with a PDF beside it, written atomically and reproducibly (the PDF carries no creation date), in the
splits' colours.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

from sftrl import io

SPLIT_STYLE = {
    "id": {"color": "tab:blue", "label": "ID (seen hands)"},
    "id_unseen": {"color": "tab:green", "label": "ID (unseen hands)"},
    "ood": {"color": "tab:red", "label": "OOD (J=11, Q=12, K=13)"},
}


def write_rows_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], path: str | Path) -> None:
    """Rows as CSV in `columns` order; None is written as an empty cell."""
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if row[k] is None else row[k]) for k in columns} for row in rows)
    io.write_text(path, buffer.getvalue())


def write_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], csv_path: str | Path) -> list[Path]:
    """The CSV and a Parquet copy beside it (same stem)."""
    import pandas as pd

    csv_path = Path(csv_path)
    write_rows_csv(rows, columns, csv_path)
    parquet = csv_path.with_suffix(".parquet")
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=list(columns))
    with io.atomic_path(parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    return [csv_path, parquet]


def new_figure(figsize: tuple[float, float] = (7, 4.2)):
    """A figure with one axes, laid out by matplotlib's constrained layout (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_rates(
    ax: Any,
    steps: Sequence[float],
    rates: Iterable[float],
    lows: Iterable[float],
    highs: Iterable[float],
    color: str,
    alpha: float = 0.15,
    **line: Any,
) -> None:
    """A success curve in percent over its 95% interval, shaded (rates and bounds as fractions)."""
    ax.fill_between(
        steps, [100 * float(x) for x in lows], [100 * float(x) for x in highs], color=color, alpha=alpha, linewidth=0
    )
    ax.plot(steps, [100 * float(x) for x in rates], marker="o", color=color, **line)


def save_figure(fig: Any, png_path: str | Path, **options: Any) -> list[Path]:
    """The PNG (150 dpi) and a PDF beside it, each written atomically, the PDF without a timestamp;
    `options` go to `savefig` for both (e.g. `bbox_inches="tight"`)."""
    png_path = Path(png_path)
    written = []
    for path, kwargs in (
        (png_path, {"dpi": 150, **options}),
        (png_path.with_suffix(".pdf"), {**options, "metadata": {"CreationDate": None}}),
    ):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)
        written.append(path)
    return written
