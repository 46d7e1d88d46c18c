"""`securepipe ARGS...` with a pause before the publish stage, for crash tests.

    python tests/e2e/paused_run.py MARKER run --config ... --date ...

Touches MARKER when the nightly run reaches `publish`, then sleeps until the test kills it. The
fault is injected here, in the tests, by replacing the stage the pipeline calls.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from securepipe.cli import main
from securepipe.pipeline import nightly


def _paused(*args: Any, **kwargs: Any) -> Any:
    Path(sys.argv[1]).touch()
    time.sleep(300)
    return _publish(*args, **kwargs)


_publish = nightly.publish
nightly.publish = _paused

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:]))
