"""The price of security on the shipped configuration (`make bench`; issue 32): on one landing
batch of N customers and N transactions, each in a fresh process one after the other (bench/job.py,
`local[2]`): a plain CSV -> Delta job, the job written by hand with Spark's built-ins and Great
Expectations (bench/peer.py), and `run_nightly` with conf/pipeline.yaml and conf/access/.

Writes <out>/shipped.json: seconds of each, the ratios securepipe / peer and securepipe / plain,
per-table stages, peak memory.

    python bench/shipped.py --sizes 1000000,4000000 --out bench-results
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import DAY, run_job  # bench/scale.py: a job in its own process, memory sampled

from securepipe.io.generate import generate_landing

ROOT = Path(__file__).resolve().parents[1]
MODES = ("shipped-plain", "shipped-peer", "shipped-secure")


def write_shipped_config(dest: Path) -> Path:
    """conf/ copied to `dest/conf` unchanged but for its paths (bench/job.py overrides them)."""
    conf = dest / "conf"
    shutil.copytree(ROOT / "conf", conf, dirs_exist_ok=True)
    doc = yaml.safe_load((conf / "pipeline.yaml").read_text())
    doc["spark"]["jars_dir"] = str(ROOT / ".cache" / "jars")
    path = conf / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    """Generate each size's batch, run the three jobs, write shipped.json."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000,4000000")
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-shipped-"))
    config = write_shipped_config(tmp)
    runs: list[dict[str, Any]] = []
    try:
        for rows in [int(s) for s in args.sizes.split(",")]:
            landing = tmp / f"landing-{rows}"
            generate_landing(landing, DAY, rows=rows, seed=rows % 997)
            work = tmp / f"work-{rows}"
            work.mkdir()
            jobs = {}
            for mode in MODES:
                jobs[mode] = run_job(mode, config, landing, work)
                print(mode, rows, jobs[mode]["seconds"], flush=True)
                shutil.rmtree(work / mode, ignore_errors=True)
            secure = jobs["shipped-secure"]["seconds"]
            runs.append(
                {
                    "rows_per_table": rows,
                    "plain_seconds": jobs["shipped-plain"]["seconds"],
                    "peer_seconds": jobs["shipped-peer"]["seconds"],
                    "securepipe_seconds": secure,
                    "securepipe_over_peer": round(secure / jobs["shipped-peer"]["seconds"], 2),
                    "securepipe_over_plain": round(secure / jobs["shipped-plain"]["seconds"], 2),
                    "jobs": jobs,
                }
            )
            shutil.rmtree(landing)
    except BaseException:
        print(f"bench failed; logs kept in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "benchmark": "shipped",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "master": "local[2]",
        "cores": os.cpu_count(),
        "command": "make bench (bench/shipped.py)",
        "targets": {"securepipe_over_peer": 1.5, "securepipe_over_plain": 3.0},
        "runs": runs,
    }
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "shipped.json").write_text(json.dumps(result, indent=2))
    print(json.dumps([{k: v for k, v in r.items() if k != "jobs"} for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
