"""spark-submit entry point: rewrite a table's encrypted columns under the newest key versions.

    spark-submit jobs/reencrypt.py --config conf/pipeline.yaml customers

Exit codes: 0 ok, 1 error.
"""

from __future__ import annotations

import sys

from securepipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["reencrypt", *sys.argv[1:]]))
