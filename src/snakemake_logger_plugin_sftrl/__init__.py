"""Snakemake logger plugin `sftrl` (`--logger sftrl`): the console output of `sftrl.console`, one line per
job. Snakemake finds it by its package name; the profiles turn it on."""

import sys

from snakemake.logging import ColorizingTextHandler
from snakemake_interface_logger_plugins.base import LogHandlerBase

from sftrl.console import ConciseFormatter


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        settings = self.common_settings
        self.stream = ColorizingTextHandler(
            nocolor=settings.nocolor, stream=sys.stdout if settings.stdout else sys.stderr
        )
        self.setFormatter(ConciseFormatter(settings.quiet, settings.show_failed_logs))
        self.stream.setFormatter(self.formatter)

    def emit(self, record) -> None:
        self.stream.emit(record)

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return False  # Snakemake's own filter: --quiet, -p and the dry run as usual

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False
