"""`python -m securepipe` is the `securepipe` command."""

from __future__ import annotations

import sys

from securepipe.cli import main

sys.exit(main())
