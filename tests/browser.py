"""Headless Chromium (Debian `chromium`, installed by `make system-deps`) for the report pages:
the DOM as the browser built it, its visible text, and screenshots."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: `make system-deps` installs it")
        pytest.skip("chromium is not installed (make system-deps)")
    return path


def _run(*args: str) -> str:
    proc = subprocess.run([chromium(), *_FLAGS, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def rendered_dom(page: Path) -> str:
    """The page's DOM after Chromium loaded and laid it out."""
    dom = _run("--dump-dom", page.resolve().as_uri())
    assert "<body" in dom, f"{page}: chromium rendered nothing"
    return dom


def visible_text(dom: str) -> str:
    """The text a reader sees: no style or script, no tags, entities decoded."""
    body = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 1600) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(f"--screenshot={out}", f"--window-size={width},{height}", page.resolve().as_uri())
    assert out.stat().st_size > 1000, f"{out}: empty screenshot"
    return out
