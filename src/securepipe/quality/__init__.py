"""Compliance gates: GX suites with actions, built-in checks, row-level quarantine, reports."""

from __future__ import annotations

__all__: list[str] = []
