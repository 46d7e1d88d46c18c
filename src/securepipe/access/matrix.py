"""The access matrix: who sees what, in one document for the console, JSON and the HTML page."""

from __future__ import annotations

from typing import Any

from securepipe.access.policy import AccessPolicy
from securepipe.access.risk import risk_targets
from securepipe.access.views import matrix
from securepipe.config import PipelineConfig

__all__ = ["grants", "matrix_doc"]


def grants(policy: AccessPolicy) -> list[dict[str, Any]]:
    """Per role: its description, attributes, the keys it may decrypt with and the row filter
    of each table it sees (for the access matrix)."""
    return [
        {
            "role": name,
            "description": role.description,
            "attributes": dict(role.attributes),
            "keys": list(role.keys),
            "row_filters": {table: tp.rows for table, tp in role.tables.items()},
        }
        for name, role in policy.roles.items()
    ]


def matrix_doc(cfg: PipelineConfig, policy: AccessPolicy) -> dict[str, Any]:
    """Everything the access matrix shows (console, JSON, HTML): the policy version, the roles,
    each column's treatment per role, each role's row filters and key grants, and the
    re-identification risk policy of each role table."""
    return {
        "policy_version": policy.version(),
        "roles": list(policy.roles),
        "columns": matrix(cfg, policy),
        "grants": grants(policy),
        "risk": risk_targets(policy),
    }
