"""Process-wide settings, applied once when a command starts: CPU threads, malloc, how float32 tanh runs, oneDNN's
kernel cache and the int8 kernel (the recipe section `runtime:`, `RuntimeConfig` in seq2seq/config.py).

    parser = ArgumentParser(...)
    add_runtime_options(parser)                    # --threads --allocator --tanh --onednn-cache --int8-kernel
    args = parser.parse_args(argv)
    apply(runtime_from_args(args, recipe.runtime)) # a command that runs a recipe (train)
    apply(runtime_from_args(args))                 # a command that loads a run (translate, evaluate, forecast, ...)

Precedence: a command-line option, then the recipe's `runtime:` section where the command runs a recipe, then
RuntimeConfig's defaults. A command that loads a trained run passes no recipe section: the machine that decodes is
not necessarily the one that trained. `apply` belongs at the top of a command's main, before the first oneDNN
kernel is built (oneDNN reads its cache capacity then) and before large allocations. Importing the package changes
nothing; Python code that wants the commands' settings calls `apply(RuntimeConfig())` itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing

from seq2seq.cli import non_negative_int
from seq2seq.config import RuntimeConfig

ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"  # oneDNN's own variable; read when it builds its first kernel


def _choices(name: str) -> tuple[str, ...]:
    return typing.get_args(typing.get_type_hints(RuntimeConfig)[name])


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """The runtime options, one per RuntimeConfig field; an option not given is None (the recipe's or the default)."""
    default = RuntimeConfig()
    group = parser.add_argument_group("runtime (process-wide; an option given wins over the recipe's runtime section)")
    group.add_argument("--threads", type=non_negative_int,
                       help=f"CPU intra-op threads, 0 for torch's default (default: {default.threads})")
    group.add_argument("--allocator", choices=_choices("allocator"),
                       help="reuse: glibc keeps freed memory for reuse; system: malloc as it is "
                            f"(default: {default.allocator})")
    group.add_argument("--tanh", choices=_choices("tanh"),
                       help="float32 tanh on the CPU: torch's, as sigmoids, or auto: as sigmoids where torch's tanh "
                            f"is MKL's on a CPU that is not Intel's (default: {default.tanh})")
    group.add_argument("--onednn-cache", type=non_negative_int, metavar="N",
                       help=f"kernels oneDNN keeps compiled, 0 for oneDNN's default; {ONEDNN_CACHE} in the "
                            f"environment wins (default: {default.onednn_cache})")
    group.add_argument("--int8-kernel", choices=_choices("int8_kernel"),
                       help="int8 decoding's matrix products; auto: dynamic where it runs, else int_mm "
                            f"(default: {default.int8_kernel})")  # fmt: skip


def runtime_from_args(args: argparse.Namespace, recipe_runtime: RuntimeConfig | None = None) -> RuntimeConfig:
    """The runtime of a command: `recipe_runtime` (or the defaults) with the options given on the command line."""
    base = RuntimeConfig() if recipe_runtime is None else recipe_runtime
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RuntimeConfig)
             if getattr(args, f.name, None) is not None}  # fmt: skip
    return dataclasses.replace(base, **given)


def apply(runtime: RuntimeConfig) -> dict[str, str | int]:
    """Make the process-wide settings of `runtime`; returns what is in effect: {"threads": torch's intra-op threads,
    "allocator": "reuse" where glibc took the settings else "system", "tanh": "native" | "sigmoid", "onednn_cache":
    the capacity oneDNN will read (or "" for its default), "int8_kernel": the choice}."""
    import torch  # here, not at the top: `--help` and a bad option need no torch

    from seq2seq.allocator import reuse_freed_memory
    from seq2seq.kernels import activation, int8

    if runtime.onednn_cache:
        os.environ.setdefault(ONEDNN_CACHE, str(runtime.onednn_cache))  # a value the user set wins
    reused = runtime.allocator == "reuse" and reuse_freed_memory()

    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    int8.choose_kernel(runtime.int8_kernel)
    return {"threads": torch.get_num_threads(), "allocator": "reuse" if reused else "system",
            "tanh": activation.choose_tanh(runtime.tanh), "onednn_cache": os.environ.get(ONEDNN_CACHE, ""),
            "int8_kernel": runtime.int8_kernel}  # fmt: skip
