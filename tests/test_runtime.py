"""seq2seq.runtime: the runtime section and options, their precedence, and what `apply` does to the process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
import yaml

from seq2seq.cli import ArgumentParser, UsageError
from seq2seq.config import ConfigError, RuntimeConfig, load_recipe, recipe_from_dict
from seq2seq.runtime import add_runtime_options, runtime_from_args
from seq2seq.train import check_same_run

from .conftest import ROOT

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
EN_FR = ROOT / "recipes" / "en-fr.yaml"


def parse(*argv: str):
    parser = ArgumentParser(prog="test")
    add_runtime_options(parser)
    return parser.parse_args(list(argv))


def test_an_option_wins_over_the_recipe_which_wins_over_the_defaults():
    recipe = load_recipe(EN_FR, ["runtime.threads=3", "runtime.tanh=native"]).runtime
    assert runtime_from_args(parse()) == RuntimeConfig()
    assert runtime_from_args(parse(), recipe) == recipe
    both = runtime_from_args(parse("--threads", "1", "--allocator", "system", "--onednn-cache", "0"), recipe)
    assert both == RuntimeConfig(threads=1, allocator="system", tanh="native", onednn_cache=0)
    assert runtime_from_args(parse("--int8-kernel", "int_mm", "--tanh", "sigmoid")).int8_kernel == "int_mm"


@pytest.mark.parametrize("argv, message", [
    (["--threads", "-1"], "--threads: must be 0 or more"),
    (["--tanh", "tanhh"], "--tanh: invalid choice: 'tanhh'"),
    (["--allocator", "jemalloc"], "--allocator: invalid choice"),
    (["--int8-kernel", "fast"], "--int8-kernel: invalid choice"),
])  # fmt: skip
def test_a_bad_option_is_a_usage_error_naming_it(argv, message):
    with pytest.raises(UsageError, match=message):
        parse(*argv)


@pytest.mark.parametrize("override, message", [
    ("runtime.threads=-2", "runtime.threads must be >= 0"),
    ("runtime.tanh=fast", r"runtime.tanh must be one of \['auto', 'native', 'sigmoid'\]"),
    ("runtime.onednn_cahce=4", "unknown key 'runtime.onednn_cahce'; did you mean 'runtime.onednn_cache'"),
])  # fmt: skip
def test_the_runtime_section_is_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(EN_FR, [override])


def test_train_threads_points_to_runtime_threads_and_old_runs_still_load(tmp_path):
    with pytest.raises(ConfigError, match=r"train.threads is now runtime.threads: give runtime.threads=2 \(or the "
                                          r"option --threads 2\)"):  # fmt: skip
        load_recipe(EN_FR, ["train.threads=2"])
    assert load_recipe(EN_FR, ["train.threads=0"]) == load_recipe(EN_FR)  # the default older versions spelled out
    # a run that an older version trained with train.threads: its recipe.yaml and checkpoints still load, and it
    # resumes under the same recipe
    old = load_recipe(EN_FR).to_dict()
    old["train"]["threads"] = 2
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(old))
    assert recipe_from_dict(old, saved=True) == load_recipe(tmp_path / "recipe.yaml", saved=True) == load_recipe(EN_FR)
    check_same_run(load_recipe(EN_FR, ["runtime.threads=2", "runtime.tanh=native"]), tmp_path)


APPLY = textwrap.dedent("""
    import ctypes, json, os, sys
    from seq2seq.config import RuntimeConfig
    from seq2seq.runtime import apply
    effects = apply(RuntimeConfig(**json.loads(sys.argv[1])))
    if sys.argv[2] == "glibc":
        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
        libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = Info
        libc.malloc.restype = ctypes.c_void_p; libc.free.argtypes = [ctypes.c_void_p]
        before = libc.mallinfo2().hblks
        p = libc.malloc(64 << 20)  # served by a fresh mmap unless the settings took effect
        effects["mapped_blocks"] = libc.mallinfo2().hblks - before
        libc.free(p)
    import torch
    from seq2seq.kernels import activation, int8
    effects.update(torch_threads=torch.get_num_threads(), kind=activation.cpu_tanh(), kernel=int8.chosen_kernel(),
                   env=os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"))
    print(json.dumps(effects))
""")


def applied(settings: dict, env: dict | None = None) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    done = subprocess.run([sys.executable, "-c", APPLY, json.dumps(settings), "glibc" if GLIBC else "other"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**environment, **(env or {})})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_apply_makes_each_setting_and_says_what_took_effect():
    """In a fresh process each: the settings are process-wide. The malloc settings take effect on glibc only."""
    defaults = applied({})
    assert defaults["allocator"] == ("reuse" if GLIBC else "system") and defaults.get("mapped_blocks", 0) == 0
    assert defaults["env"] == defaults["onednn_cache"] == "8192"
    assert defaults["tanh"] == defaults["kind"] in ("native", "sigmoid") and defaults["int8_kernel"] == "auto"
    chosen = applied({"threads": 1, "allocator": "system", "tanh": "sigmoid", "onednn_cache": 0,
                      "int8_kernel": "int_mm"})  # fmt: skip
    assert chosen["allocator"] == "system" and chosen.get("mapped_blocks", 1) == 1  # malloc left as it is
    assert chosen["threads"] == chosen["torch_threads"] == 1
    assert chosen["tanh"] == chosen["kind"] == "sigmoid" and chosen["kernel"] == "int_mm"
    assert chosen["env"] is None and chosen["onednn_cache"] == ""  # oneDNN's own default
    users = applied({"onednn_cache": 4096}, env={"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "512"})
    assert users["env"] == users["onednn_cache"] == "512"  # the user's value wins
