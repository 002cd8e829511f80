"""What Snakemake prints while the workflow runs: one line per job, no line longer than `MAX_CHARS`.

Snakemake's own job block lists every input and output (thousands of characters for a report job) and the
reason with every missing file. Here a job is one line, its rule, wildcards and threads, and the reason
names its first file and counts the rest. Everything else (errors with the failed job's log, progress,
the final summary) is Snakemake's own text. The `.snakemake/log` file keeps Snakemake's full blocks, which
`sftrl.runlog` reads. The logger plugin `snakemake_logger_plugin_sftrl` installs this formatter
(`--logger sftrl`, set in the profiles).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from snakemake.logging import DefaultFormatter, format_wildcards, is_quiet_about, timestamp

MAX_CHARS = 300
_FILE_LIST = re.compile(r"^(?P<head>[^:;]+: )(?P<files>[^;]+)$")


def shorten_reason(reason: str, limit: int = MAX_CHARS - 12) -> str:
    """Each `what: file, file, …` part of a reason as its first file and the count of the others."""
    parts = []
    for part in str(reason).split("; "):
        match = _FILE_LIST.match(part)
        files = match.group("files").split(", ") if match else []
        if match and len(files) > 1:
            part = f"{match.group('head')}{files[0]} and {len(files) - 1} more"
        parts.append(part)
    text = "; ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_line(msg: Mapping[str, Any]) -> str:
    """`job 12: evaluate (model=sft-100), 2 threads` (`checkpoint roles` for a checkpoint; where it runs,
    Snakemake's `local`, says nothing here: every job of a local run is)."""
    kind = "checkpoint " if msg.get("is_checkpoint") else ""
    line = f"job {msg['jobid']}: {kind}{msg['rule_name']}"
    wildcards = format_wildcards(msg.get("wildcards") or {})
    if wildcards:
        line += f" ({wildcards})"
    if (msg.get("threads") or 1) > 1:
        line += f", {msg['threads']} threads"
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 1] + "…"


class ConciseFormatter(DefaultFormatter):
    """Snakemake's formatter with each job's block as one line (and its reason, shortened, unless quiet)."""

    def format_job_info(self, msg: dict[str, Any]) -> str:
        lines = [timestamp(), job_line(msg)]
        if msg.get("reason") and not is_quiet_about(self.quiet, "reason"):
            lines.append(f"    reason: {shorten_reason(msg['reason'])}")
        return "\n".join(lines)
