"""spark-submit entry point: retention (log retention properties + VACUUM) on every table.

    spark-submit jobs/maintenance.py --config conf/pipeline.yaml [--retain-hours 168]

Exit codes: 0 ok, 1 error (including a retention below Delta's 7-day safety threshold).
"""

from __future__ import annotations

import sys

from securepipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
