"""Column protection: operator classes (every fact about an operator lives on its class), their
registry, the Arrow UDFs they run, and the transforms that apply and reverse them.

Importing the package registers the built-in operators.
"""

from __future__ import annotations

from securepipe.protect import operators as _operators  # registers the built-in operators
from securepipe.protect.apply import protect_columns, protected_column
from securepipe.protect.registry import get_operator, operator_for

__all__ = ["get_operator", "operator_for", "protect_columns", "protected_column"]

del _operators
