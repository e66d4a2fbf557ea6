"""docs/cli.md is generated from the commands' --help (scripts/cli_docs.py) and must agree with them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from .conftest import ROOT

REGENERATE = "python scripts/cli_docs.py > docs/cli.md"


def load_cli_docs():
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "scripts" / "cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_matches_every_commands_help():
    # a fresh interpreter: COLUMNS and argparse's cached terminal width must not leak in from the test process
    done = subprocess.run([sys.executable, "scripts/cli_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"docs/cli.md disagrees with the commands' --help; regenerate it: {REGENERATE}\n" + (
        done.stdout + done.stderr
    )


def test_every_console_script_is_documented():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    documented = {script: module for module, script, _ in load_cli_docs().COMMANDS}
    assert set(scripts) == set(documented), "pyproject's console scripts and docs/cli.md list different tools"
    for script, target in scripts.items():
        assert target == f"{documented[script]}:main", f"{script} runs {target}, the docs say {documented[script]}"
