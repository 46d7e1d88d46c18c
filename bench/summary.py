"""Render bench-results/*.json into docs/benchmarks.md (the latest figures, with the command)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Write docs/benchmarks.md from the JSON results."""
    results = ROOT / "bench-results"
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (results as JSON in `bench-results/`, "
        "git-ignored); machine: 2 cores, `local[2]`. Never timed inside the test suite.",
        "",
    ]
    ops = results / "operators.json"
    if ops.exists():
        d = json.loads(ops.read_text())
        lines += [
            f"## Operators ({d['rows']:,} rows, {d['when']})",
            "",
            "| operator | seconds | rows/s |",
            "| --- | ---: | ---: |",
        ]
        lines += [
            f"| {k} | {v['seconds']} | {v['rows_per_s']:,} |" for k, v in d["results"].items()
        ]
        lines += ["", "| target | value | met |", "| --- | ---: | --- |"]
        r = d["ratios"]
        lines += [
            f"| encrypt ≥ 2.5x Spark `aes_encrypt` | {r['encrypt_vs_builtin_aes_encrypt']}x | "
            f"{'yes' if r['encrypt_vs_builtin_aes_encrypt'] >= 2.5 else 'no'} |",
            f"| tokenize hmac ≥ 2x naive `@udf` | {r['hmac_vs_naive_udf']}x | "
            f"{'yes' if r['hmac_vs_naive_udf'] >= 2 else 'no'} |",
            f"| fpe ≥ 100,000 values/s | {r['fpe_values_per_s']:,} | "
            f"{'yes' if r['fpe_values_per_s'] >= 100_000 else 'no'} |",
            "",
        ]
    pipe = results / "pipeline.json"
    if pipe.exists():
        d = json.loads(pipe.read_text())
        lines += [
            f"## Nightly job, customers ({d['rows']:,} rows, {d['when']})",
            "",
            "| stage | seconds |",
            "| --- | ---: |",
        ]
        lines += [f"| {k} | {v} |" for k, v in d["stages"].items()]
        lines += [
            f"| total run | {d['run_seconds']} |",
            "",
            f"Throughput {d['rows_per_s']:,} rows/s end to end; gate = "
            f"{', '.join(d['gate']['checks'])} + {d['gate']['expectations']} GX "
            "expectations.",
            "",
        ]
    era = results / "erasure.json"
    if era.exists():
        d = json.loads(era.read_text())
        lines += [f"## Per-subject keys ({d['rows']:,} rows, {d['subjects']:,} subjects, "
                  f"{d['when']})", "",
                  "| encryption | seconds | rows/s |", "| --- | ---: | ---: |",
                  f"| per-column key | {d['per_column_key']['seconds']} | "
                  f"{d['per_column_key']['rows_per_s']:,} |",
                  f"| per-subject key (join + unwrap per row) | {d['per_subject_key']['seconds']} "
                  f"| {d['per_subject_key']['rows_per_s']:,} |", "",
                  f"Ratio {d['ratio']} (target ≥ 0.5: {'met' if d['target_at_least_half'] else 'not met'}); "
                  f"creating the {d['subjects']:,} subject keys took {d['key_provisioning_seconds']} s "
                  "(once per subject).", ""]
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
