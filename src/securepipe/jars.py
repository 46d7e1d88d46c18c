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

__all__ = [
    "DELTA_VERSION",
    "MAVEN_COORDINATES",
    "S3_COORDINATES",
    "S3_PACKAGES",
    "fetch_jars",
    "local_jars",
]

# Maven Central serves delta-spark_4.1_2.13 up to 4.4.0 (4.4.1 exists on PyPI only).
DELTA_VERSION = "4.4.0"
SPARK_MAJOR_MINOR = "4.1"
SCALA = "2.13"
MAVEN_COORDINATES = (
    f"io.delta:delta-spark_{SPARK_MAJOR_MINOR}_{SCALA}:{DELTA_VERSION}",
    f"io.delta:delta-storage:{DELTA_VERSION}",
)
# An `s3a://` lakehouse needs hadoop-aws at the version of the Hadoop client pyspark ships
# (pyspark 4.1 bundles hadoop-client 3.4.2) and the AWS SDK v2 bundle hadoop-aws 3.4.2 was built
# against (hadoop-project's aws-java-sdk-v2.version). Mixing versions fails at class loading.
HADOOP_VERSION = "3.4.2"
AWS_SDK_VERSION = "2.29.52"
S3_COORDINATES = (
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
    f"software.amazon.awssdk:bundle:{AWS_SDK_VERSION}",
)
# What `--packages` needs: Ivy resolves the SDK bundle from hadoop-aws's POM.
S3_PACKAGES = (S3_COORDINATES[0],)
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


def _jar_name(coordinate: str) -> tuple[str, str]:
    group, artifact, version = coordinate.split(":")
    file_name = f"{artifact}-{version}.jar"
    return f"{group.replace('.', '/')}/{artifact}/{version}/{file_name}", file_name


def local_jars(jars_dir: str | Path, s3: bool = False) -> list[Path]:
    """The Delta jar files in `jars_dir` (and the S3A ones when `s3`); `FileNotFoundError` names
    the missing ones."""
    folder = Path(jars_dir)
    coordinates = MAVEN_COORDINATES + (S3_COORDINATES if s3 else ())
    paths = [folder / _jar_name(c)[1] for c in coordinates]
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


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()  # noqa: S324 - Maven Central publishes SHA-1
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, target: Path) -> str:
    """Stream `url` into `target` (via a `.part` file); returns the SHA-1 of what was written."""
    digest = hashlib.sha1()  # noqa: S324 - Maven Central publishes SHA-1
    tmp = target.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=60) as resp, tmp.open("wb") as out:  # noqa: S310
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def fetch_jars(dest: str | Path, repository: str = MAVEN_CENTRAL, s3: bool = False) -> list[Path]:
    """Download the Delta jars (and with `s3`, hadoop-aws and the AWS SDK bundle, ~650 MB) into
    `dest`, verifying each against its published SHA-1.

    Jars already present with the right checksum are not downloaded again.
    """
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for coordinate in MAVEN_COORDINATES + (S3_COORDINATES if s3 else ()):
        rel, file_name = _jar_name(coordinate)
        target = folder / file_name
        expected = _get(f"{repository}/{rel}.sha1").decode().split()[0].strip()
        if target.is_file() and _sha1(target) == expected:
            out.append(target)
            continue
        actual = _download(f"{repository}/{rel}", target)
        if actual != expected:
            target.with_suffix(".part").unlink()
            raise RuntimeError(f"checksum mismatch for {file_name}: {actual} != {expected}")
        target.with_suffix(".part").replace(target)
        out.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m securepipe.jars fetch --dest DIR` | `coordinates`."""
    parser = argparse.ArgumentParser(prog="python -m securepipe.jars")
    sub = parser.add_subparsers(dest="cmd", required=True)
    fetch = sub.add_parser("fetch", help="download the Delta jars from Maven Central")
    fetch.add_argument("--dest", default=".cache/jars")
    fetch.add_argument("--s3", action="store_true", help="also hadoop-aws + AWS SDK (s3a://)")
    coords = sub.add_parser("coordinates", help="print the --packages value for spark-submit")
    coords.add_argument("--s3", action="store_true", help="include hadoop-aws (s3a://)")
    args = parser.parse_args(argv)
    if args.cmd == "coordinates":
        print(",".join(MAVEN_COORDINATES + (S3_PACKAGES if args.s3 else ())))
        return 0
    for path in fetch_jars(args.dest, s3=args.s3):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
