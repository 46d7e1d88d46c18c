"""The jar download refuses a jar whose SHA-1 differs from the published one (a tampered mirror)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from securepipe.jars import MAVEN_COORDINATES, S3_COORDINATES, fetch_jars, local_jars


def _repository(root: Path, coordinates: tuple[str, ...], tamper: str | None = None) -> str:
    """A file:// Maven layout holding a fake jar and its .sha1 for each coordinate."""
    for coordinate in coordinates:
        group, artifact, version = coordinate.split(":")
        folder = root / group.replace(".", "/") / artifact / version
        folder.mkdir(parents=True)
        data = f"jar of {coordinate}".encode()
        jar = folder / f"{artifact}-{version}.jar"
        jar.write_bytes(data)
        (folder / f"{jar.name}.sha1").write_text(hashlib.sha1(data).hexdigest())  # noqa: S324
        if coordinate == tamper:
            jar.write_bytes(data + b" with a payload")
    return root.as_uri()


def test_fetch_verifies_and_is_idempotent(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo", MAVEN_COORDINATES + S3_COORDINATES)
    fetched = fetch_jars(tmp_path / "jars", repository=repo, s3=True)
    assert fetched == local_jars(tmp_path / "jars", s3=True)
    mtimes = [p.stat().st_mtime_ns for p in fetched]
    assert [
        p.stat().st_mtime_ns for p in fetch_jars(tmp_path / "jars", repository=repo, s3=True)
    ] == mtimes


def test_a_tampered_jar_is_refused_and_not_kept(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo", MAVEN_COORDINATES, tamper=MAVEN_COORDINATES[0])
    with pytest.raises(RuntimeError, match="checksum mismatch for delta-spark"):
        fetch_jars(tmp_path / "jars", repository=repo)
    assert list((tmp_path / "jars").iterdir()) == []  # neither the jar nor its .part file
    with pytest.raises(FileNotFoundError, match="Delta jars missing"):
        local_jars(tmp_path / "jars")
