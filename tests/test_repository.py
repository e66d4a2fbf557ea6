"""The repository speaks of the software: no development diary in the code, recipes or docs, and a short README."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import ROOT

# How a work log shows through: numbered work sessions, issue numbers, clock-time windows, "new in" notes.
NARRATION = re.compile(r"\bsessions? [0-9]|\bissue #?[0-9]|\b[0-9]{1,2}:[0-9]{2}(-[0-9]{1,2}:[0-9]{2})? UTC"
                       r"|\bnew in (session|v)", re.IGNORECASE)  # fmt: skip
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".cfg", ".txt", ""}


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [f for f in out.splitlines() if not f.startswith("tests/")]


def test_no_development_narration_outside_the_tests():
    hits = []
    for name in tracked_files():
        path = ROOT / name
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if NARRATION.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not hits, "lines that narrate how the code was made (say what the software does instead):\n" + "\n".join(
        hits
    )


def test_the_readme_is_a_short_users_guide():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; results, speed and experiments belong in docs/"


def test_readme_links_point_at_files_that_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [target for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
               if not target.startswith("http") and not (ROOT / target).exists()]  # fmt: skip
    assert not missing, f"README.md links to files that do not exist: {missing}"
