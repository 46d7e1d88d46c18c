"""spark-submit entry point of the nightly job.

    spark-submit --packages "$(python -m securepipe.jars coordinates)" jobs/nightly.py \
        --config conf/pipeline.yaml --date 2026-11-28

Exit codes: 0 ok, 2 a compliance gate refused the batch, 1 any other error.
"""

from __future__ import annotations

import sys

from securepipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
