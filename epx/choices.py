"""Enumerated option values, as ``Literal`` types the CLI declares as choices.

``epx.cli`` imports this at start-up, so it stays free of the library modules that define the
same lists (``epx.io.labels.TARGETS`` imports pandas); ``tests/test_cli_vocabulary.py`` checks
that both agree.
"""

from __future__ import annotations

from typing import Literal, get_args

Target = Literal["raw", "log1p", "rank", "nonzero", "binary"]
StackRule = Literal["seed", "mean", "rank-mean", "nnls"]
TssMode = Literal["one-sided", "both"]
Build = Literal["hg19", "hg38"]
ReportFormat = Literal["table", "md", "tsv", "json"]

ABLATION_MODES: tuple[str, ...] = ("each", "leave-one-out", "all")  # epx ablate --assays, a comma list

TARGETS: tuple[str, ...] = get_args(Target)
STACK_RULES: tuple[str, ...] = get_args(StackRule)
TSS_MODES: tuple[str, ...] = get_args(TssMode)
BUILDS: tuple[str, ...] = get_args(Build)
REPORT_FORMATS: tuple[str, ...] = get_args(ReportFormat)
