"""Security tax, scaling and memory (`make bench`): the secure nightly job against a plain job.

For each size (default 500k, 1M, 2M, 4M customers): one synthetic batch, projected onto the
standard workload's columns (bench/workload.py); then, each in a fresh process (bench/job.py),
the plain job (CSV → Delta) and the secure job (protect, gates, publish, two role tables), on the
same file, `local[2]`. While a job runs, its process tree is sampled every 0.2 s: the Python
driver, the JVM (driver and executors: one process in local mode) and the Python workers.

Writes <out>/scale.json and the charts docs/bench-stages.png, docs/bench-scaling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from job import DRIVER_MEMORY
from workload import project_landing, write_workload_config

from securepipe.io.generate import generate_landing

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-28"
PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _kind(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    if "java" in cmd.split(" ", 1)[0]:
        return "jvm"
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
        return "python_workers"
    return "other"


class Sampler(threading.Thread):
    """Peak RSS of a process tree, by kind, sampled from /proc."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.done = threading.Event()
        self.peak: dict[str, int] = {"python_driver": 0, "jvm": 0, "python_workers": 0}
        self.peak_worker = 0

    def run(self) -> None:
        while not self.done.is_set():
            tree, todo = [], [self.root]
            while todo:
                pid = todo.pop()
                tree.append(pid)
                todo += _children(pid)
            now = {"python_driver": _rss(self.root), "jvm": 0, "python_workers": 0}
            for pid in tree[1:]:
                kind = _kind(pid)
                if kind in now:
                    rss = _rss(pid)
                    now[kind] += rss
                    if kind == "python_workers":
                        self.peak_worker = max(self.peak_worker, rss)
            for key, value in now.items():
                self.peak[key] = max(self.peak[key], value)
            time.sleep(0.2)


def run_job(mode: str, config: Path, landing: Path, work: Path) -> dict[str, Any]:
    """Run bench/job.py in a fresh process; its result plus peak memory."""
    out = work / f"{mode}.json"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [
        sys.executable, str(ROOT / "bench" / "job.py"), "--mode", mode, "--config", str(config),
        "--landing", str(landing), "--date", DAY, "--work", str(work / mode), "--out", str(out),
    ]  # fmt: skip
    started = time.perf_counter()
    with (work / f"{mode}.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = Sampler(proc.pid)
        sampler.start()
        code = proc.wait()
        sampler.done.set()
        sampler.join()
    if code != 0:
        raise SystemExit(f"{mode} job failed ({code}); see {work / (mode + '.log')}")
    result: dict[str, Any] = json.loads(out.read_text())
    mib = 1 << 20
    result["process_seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mib"] = {k: round(v / mib) for k, v in sampler.peak.items()}
    result["peak_rss_mib"]["largest_python_worker"] = round(sampler.peak_worker / mib)
    return result


def charts(result: dict[str, Any], docs: Path) -> list[str]:
    """The stage breakdown at the reference size and the scaling curve, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = result["security_tax"]
    stages = ref["secure_stages"]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    left = 0.0
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#999999"]
    for (name, seconds), color in zip(stages.items(), colors, strict=False):
        ax.barh("secure", seconds, left=left, color=color, label=name)
        left += seconds
    ax.barh("plain", ref["plain_seconds"], color="#999999", label="plain (read + write)")
    ax.set_xlabel("seconds")
    ax.set_title(
        f"{ref['rows']:,} customers, local[2]: secure {ref['secure_seconds']} s, "
        f"plain {ref['plain_seconds']} s ({ref['ratio']}x)"
    )
    ax.legend(loc="lower right", fontsize=7, ncol=2)
    fig.tight_layout()
    stage_png = docs / "bench-stages.png"
    fig.savefig(stage_png, dpi=110)
    plt.close(fig)

    sizes = result["scaling"]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    xs = [s["rows"] / 1e6 for s in sizes]
    ax.plot(xs, [s["secure_us_per_row"] for s in sizes], "o-", label="secure job")
    ax.plot(xs, [s["plain_us_per_row"] for s in sizes], "s-", label="plain job")
    ref_us = next(s["secure_us_per_row"] for s in sizes if s["rows_target"] == 1_000_000)
    ax.axhspan(ref_us * 0.8, ref_us * 1.2, color="#4c72b0", alpha=0.12, label="1M ± 20%")
    ax.set_xlabel("million rows")
    ax.set_ylabel("µs per row (wall clock)")
    ax.set_ylim(bottom=0)
    ax.set_title("Time per row by batch size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    scale_png = docs / "bench-scaling.png"
    fig.savefig(scale_png, dpi=110)
    plt.close(fig)
    return [stage_png.name, scale_png.name]


def main(argv: list[str] | None = None) -> int:
    """Generate, run every size, write scale.json and the charts."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500000,1000000,2000000,4000000")
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-scale-"))
    config = write_workload_config(tmp / "conf")
    runs = []
    try:
        for rows in sizes:
            generated = tmp / f"gen-{rows}"
            generate_landing(generated, DAY, rows=rows, seed=rows % 997)
            landing = tmp / f"landing-{rows}"
            csv = landing / "customers" / DAY / "part-0000.csv"
            project_landing(generated / "customers" / DAY / "part-0000.csv", csv)
            shutil.rmtree(generated)
            work = tmp / f"work-{rows}"
            work.mkdir()
            plain = run_job("plain", config, landing, work)
            secure = run_job("secure", config, landing, work)
            run = {
                "rows_target": rows,
                "rows": secure["rows"],
                "csv_mib": round(csv.stat().st_size / (1 << 20)),
                "plain": plain,
                "secure": secure,
                "secure_us_per_row": round(secure["seconds"] / secure["rows"] * 1e6, 2),
                "plain_us_per_row": round(plain["seconds"] / plain["rows"] * 1e6, 2),
            }
            if rows == 1_000_000:
                run["read_only_seconds"] = run_job("read", config, landing, work)["seconds"]
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k not in ("plain", "secure")}))
            shutil.rmtree(landing)
            shutil.rmtree(work / "plain")
            shutil.rmtree(work / "secure")
    except BaseException:
        print(f"bench failed; logs kept in {tmp}", file=sys.stderr)
        raise
    else:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    ref = next((r for r in runs if r["rows_target"] == 1_000_000), runs[0])
    stages = dict(ref["secure"]["stages"])
    read_protect = stages.pop("read_protect", None)
    if read_protect is not None and "read_only_seconds" in ref:
        read = min(ref["read_only_seconds"], read_protect)
        stages = {"read": read, "protect": round(read_protect - read, 2), **stages}
    accounted = sum(stages.values())
    stages["other"] = round(max(ref["secure"]["seconds"] - accounted, 0.0), 2)
    result: dict[str, Any] = {
        "benchmark": "scale",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "master": "local[2]",
        "cores": os.cpu_count(),
        "command": "make bench",
        "security_tax": {
            "rows": ref["rows"],
            "secure_seconds": ref["secure"]["seconds"],
            "plain_seconds": ref["plain"]["seconds"],
            "ratio": round(ref["secure"]["seconds"] / ref["plain"]["seconds"], 2),
            "target_ratio": 4.0,
            "secure_stages": stages,
            "roles": ref["secure"]["roles"],
            "gate_checks": ref["secure"]["gate_checks"],
        },
        "scaling": [
            {
                "rows_target": r["rows_target"],
                "rows": r["rows"],
                "csv_mib": r["csv_mib"],
                "secure_seconds": r["secure"]["seconds"],
                "plain_seconds": r["plain"]["seconds"],
                "secure_us_per_row": r["secure_us_per_row"],
                "plain_us_per_row": r["plain_us_per_row"],
                "vs_1m": round(r["secure_us_per_row"] / ref["secure_us_per_row"], 2),
                "secure_stages": r["secure"]["stages"],
                "peak_rss_mib": r["secure"]["peak_rss_mib"],
                "plain_peak_rss_mib": r["plain"]["peak_rss_mib"],
            }
            for r in runs
        ],
        "driver_memory_setting": DRIVER_MEMORY,
    }
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    result["charts"] = charts(result, ROOT / "docs")
    (out / "scale.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["security_tax"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
