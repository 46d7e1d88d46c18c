"""The Delta Lake jars: coordinates, a verified download into a local folder, and lookup.

Three ways to get them onto the classpath (see `securepipe.spark.configure_builder`):
`local` (this folder; what `make setup` fills, and what air-gapped users copy in), `packages`
(Spark's Ivy resolves the coordinates) and `provided` (`spark-submit --packages/--jars`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from pathlib import Path

__all__ = ["DELTA_VERSION", "MAVEN_COORDINATES", "fetch_jars", "local_jars"]

# Maven Central serves delta-spark_4.1_2.13 up to 4.4.0 (4.4.1 exists on PyPI only).
DELTA_VERSION = "4.4.0"
SPARK_MAJOR_MINOR = "4.1"
SCALA = "2.13"
MAVEN_COORDINATES = (
    f"io.delta:delta-spark_{SPARK_MAJOR_MINOR}_{SCALA}:{DELTA_VERSION}",
    f"io.delta:delta-storage:{DELTA_VERSION}",
)
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


def _jar_name(coordinate: str) -> tuple[str, str]:
    group, artifact, version = coordinate.split(":")
    file_name = f"{artifact}-{version}.jar"
    return f"{group.replace('.', '/')}/{artifact}/{version}/{file_name}", file_name


def local_jars(jars_dir: str | Path) -> list[Path]:
    """The Delta jar files in `jars_dir`; `FileNotFoundError` names the missing ones."""
    folder = Path(jars_dir)
    paths = [folder / _jar_name(c)[1] for c in MAVEN_COORDINATES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Delta jars missing from {folder}: {', '.join(missing)} "
            "(run `make setup`, or `python -m securepipe.jars fetch --dest DIR`)"
        )
    return paths


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - fixed https URL
        data: bytes = resp.read()
    return data


def fetch_jars(dest: str | Path, repository: str = MAVEN_CENTRAL) -> list[Path]:
    """Download the Delta jars into `dest`, verifying each against its published SHA-1.

    Jars already present with the right checksum are not downloaded again.
    """
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for coordinate in MAVEN_COORDINATES:
        rel, file_name = _jar_name(coordinate)
        target = folder / file_name
        expected = _get(f"{repository}/{rel}.sha1").decode().split()[0].strip()
        if target.is_file() and hashlib.sha1(target.read_bytes()).hexdigest() == expected:  # noqa: S324
            out.append(target)
            continue
        data = _get(f"{repository}/{rel}")
        actual = hashlib.sha1(data).hexdigest()  # noqa: S324 - Maven Central publishes SHA-1
        if actual != expected:
            raise RuntimeError(f"checksum mismatch for {file_name}: {actual} != {expected}")
        tmp = target.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(target)
        out.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m securepipe.jars fetch --dest DIR` | `coordinates`."""
    parser = argparse.ArgumentParser(prog="python -m securepipe.jars")
    sub = parser.add_subparsers(dest="cmd", required=True)
    fetch = sub.add_parser("fetch", help="download the Delta jars from Maven Central")
    fetch.add_argument("--dest", default=".cache/jars")
    sub.add_parser("coordinates", help="print the --packages value for spark-submit")
    args = parser.parse_args(argv)
    if args.cmd == "coordinates":
        print(",".join(MAVEN_COORDINATES))
        return 0
    for path in fetch_jars(args.dest):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
