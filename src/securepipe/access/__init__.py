"""Per-role access: row filters and column masks from conf/access, role tables, the access gate."""

from __future__ import annotations

__all__: list[str] = []
