"""Compliance gates: GX suites with actions, built-in checks, row-level quarantine rules."""

from __future__ import annotations

import os

# Before Great Expectations is first imported (by `rules` or `gx_runner`): no usage analytics.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

__all__: list[str] = []
