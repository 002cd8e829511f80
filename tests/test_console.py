"""The console: one line per job, reasons shortened, no line over 300 characters; the plugin Snakemake loads."""

import logging
from typing import Any, cast

from sftrl.console import MAX_CHARS, ConciseFormatter, job_line, shorten_reason


def test_a_reason_names_its_first_file_and_counts_the_rest():
    files = ", ".join(f"results/tiny/eval/sft-{i}/ood/metrics.json" for i in range(40))
    reason = f"Missing output files: {files}; Input files updated by another job: results/tiny/models/sft-5"
    assert shorten_reason(reason) == (
        "Missing output files: results/tiny/eval/sft-0/ood/metrics.json and 39 more; "
        "Input files updated by another job: results/tiny/models/sft-5"
    )
    assert shorten_reason("Forced execution") == "Forced execution"
    assert len(shorten_reason("; ".join([f"Cause {i}: a, b" for i in range(100)]))) < MAX_CHARS


def test_a_job_is_one_line_with_its_rule_wildcards_and_threads():
    msg = {"jobid": 12, "rule_name": "rl", "wildcards": {"algo": "ppo", "step": "100", "seed": "2"}, "threads": 2}
    assert job_line(msg) == "job 12: rl (algo=ppo, step=100, seed=2), 2 threads"
    assert job_line({"jobid": 3, "rule_name": "roles", "wildcards": {}, "threads": 1, "is_checkpoint": True}) == (
        "job 3: checkpoint roles"
    )


def test_the_formatter_prints_no_input_or_output_lists():
    from snakemake_interface_logger_plugins.common import LogEvent

    inputs = [f"results/tiny/eval/sft-{i}/ood/metrics.json" for i in range(200)]
    record = logging.LogRecord("snakemake", logging.INFO, "", 0, None, None, None)
    record.event = LogEvent.JOB_INFO
    record.__dict__.update(
        {
            "jobid": 7,
            "rule_name": "claims",
            "rule_msg": None,
            "local": True,
            "is_checkpoint": False,
            "wildcards": {},
            "threads": 1,
            "input": inputs,
            "output": ["results/tiny/report/claims.md"],
            "log": [],
            "reason": "Missing output files: results/tiny/report/claims.md; Input files updated by another job: "
            + ", ".join(inputs),
        }
    )
    text = ConciseFormatter(quiet=set()).format(record)
    lines = text.splitlines()
    assert lines[1] == "job 7: claims"
    assert lines[2].startswith("    reason: Missing output files: results/tiny/report/claims.md; Input files updated")
    assert lines[2].endswith("and 199 more") and max(map(len, lines)) <= MAX_CHARS


def test_snakemake_finds_the_logger_plugin():
    from snakemake_interface_logger_plugins.registry import LoggerPluginRegistry

    plugin = LoggerPluginRegistry().get_plugin("sftrl")
    assert cast(Any, plugin).log_handler.__module__ == "snakemake_logger_plugin_sftrl"  # a plugin's own field


def test_a_failed_job_shows_its_log_ending_in_the_error(tmp_path):
    from snakemake_interface_logger_plugins.common import LogEvent

    log = tmp_path / "sft.log"
    log.write_text("SFT of the base on the ID set, a model at every ladder step\nTraceback …\nValueError: bad\n")
    record = logging.LogRecord("snakemake", logging.ERROR, "", 0, None, None, None)
    record.event = LogEvent.JOB_ERROR
    record.__dict__.update(
        {
            "rule_name": "sft",
            "rule_msg": None,
            "msg": None,
            "jobid": 6,
            "input": [],
            "output": [],
            "log": [str(log)],
            "conda_env": None,
            "shellcmd": None,
            "aux": {},
        }
    )
    lines = ConciseFormatter(quiet=set(), show_failed_logs=True).format(record).splitlines()
    assert "Error in rule sft:" in lines and lines[-2] == "ValueError: bad"
