"""The package's layers (docs/architecture.md): which module may import which, and that importing changes nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

from .conftest import ROOT

PACKAGE = ROOT / "seq2seq"

# Lowest first. A module may import from its own layer and the layers before it; the longest prefix places it.
LAYERS = [
    ("kernels", ["seq2seq.kernels"]),
    ("core", ["seq2seq.models.recurrent"]),
    ("foundation", ["seq2seq.config", "seq2seq.decoding", "seq2seq.runtime", "seq2seq.cli", "seq2seq.tokenizer",
                    "seq2seq.metrics", "seq2seq.allocator"]),
    ("data", ["seq2seq.data"]),
    ("models", ["seq2seq.models", "seq2seq.losses"]),
    ("search and training", ["seq2seq.search", "seq2seq.ensemble", "seq2seq.checkpoint", "seq2seq.runlog",
                             "seq2seq.plots", "seq2seq.trainer", "seq2seq.forecasting"]),
    ("composition", ["seq2seq.tasks", "seq2seq.translator", "seq2seq.model_card"]),
    ("entry points", ["seq2seq.prompt", "seq2seq.batcher", "seq2seq.serving",
                      "seq2seq.hub", "seq2seq.export", "seq2seq.onnx_greedy", "seq2seq.train", "seq2seq.translate",
                      "seq2seq.evaluate", "seq2seq.generate", "seq2seq.forecast", "seq2seq.serve", "seq2seq.score",
                      "seq2seq.average"]),
]  # fmt: skip
# Imports inside a function that reach a higher layer, each breaking an import cycle; no other may (the kernels and
# the core have none: test_the_core_imports_only_the_kernels_and_torch).
LAZY_UPWARD = {
    ("seq2seq.checkpoint", "seq2seq.export"),  # checkpoint.load reads an exported model folder
    ("seq2seq.translator", "seq2seq.hub"),  # Translator.from_pretrained resolves a Hub name
    ("seq2seq.cli", "seq2seq.checkpoint"),  # check_runs finds checkpoints; one_line knows the package's errors
    ("seq2seq.cli", "seq2seq.data.corpora"),
    ("seq2seq.cli", "seq2seq.trainer"),
}


def modules() -> dict[str, ast.Module]:
    """Every module of the package by dotted name (a package by its own name), parsed."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def layer_of(module: str) -> int | None:
    if module == "seq2seq":
        return -1  # the package's __init__: its version only, below everything
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def imports(name: str, tree: ast.Module, known: set[str]) -> list[tuple[str, bool, int]]:
    """(imported module of the package, at module level, line) for each import of `tree`."""
    top = {id(node) for node in tree.body}
    package = name if (PACKAGE / name.removeprefix("seq2seq.").replace(".", "/")).is_dir() else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        found += [(t, id(node) in top, node.lineno) for t in targets if t == "seq2seq" or t.startswith("seq2seq.")]
    return found


def test_every_module_has_a_layer():
    unplaced = [name for name in modules() if layer_of(name) is None]
    assert not unplaced, f"place these modules in a layer of LAYERS (and in docs/architecture.md): {unplaced}"


def test_imports_follow_the_layers():
    parsed = modules()
    wrong = []
    for name, tree in parsed.items():
        own = layer_of(name)
        for target, at_top, line in imports(name, tree, set(parsed)):
            theirs = layer_of(target)
            if theirs is None or theirs <= own or (not at_top and (name, target) in LAZY_UPWARD):
                continue
            where = "" if at_top else " (inside a function)"
            wrong.append(f"{name}:{line} imports {target}{where}: layer {LAYERS[own][0]!r} may not use "
                         f"{LAYERS[theirs][0]!r}")  # fmt: skip
    assert not wrong, "imports against the layer order of docs/architecture.md:\n" + "\n".join(wrong)


def test_the_core_imports_only_the_kernels_and_torch():
    parsed = modules()
    for name in ("seq2seq.models.recurrent", *(n for n in parsed if n.startswith("seq2seq.kernels"))):
        targets = {target for target, _, _ in imports(name, parsed[name], set(parsed))}
        assert all(t.startswith("seq2seq.kernels") for t in targets), f"{name} imports {sorted(targets)}"
    assert not imports("seq2seq", parsed["seq2seq"], set(parsed))


def test_the_architecture_page_names_every_layer():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [p for _, prefixes in LAYERS for p in prefixes if f"`{p.removeprefix('seq2seq.')}" not in page]
    assert not missing, f"docs/architecture.md does not place {missing}"


PROBE = textwrap.dedent("""
    import importlib, os, pkgutil, sys
    before = dict(os.environ)
    import torch
    threads = torch.get_num_threads()
    import seq2seq
    root = os.path.dirname(seq2seq.__file__)
    calls = []

    def watch(frame, event, fn):  # a torch operation or a clock read by the package's own code
        if event == "c_call" and frame.f_code.co_filename.startswith(root):
            if getattr(fn, "__module__", None) in ("time", "torch") or isinstance(getattr(fn, "__self__", None),
                                                                               torch.Tensor):
                calls.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {fn}")

    names = [m.name for m in pkgutil.walk_packages(seq2seq.__path__, "seq2seq.")]
    sys.setprofile(watch)
    for name in names:
        importlib.import_module(name)
    sys.setprofile(None)
    assert not calls, calls
    changed = {k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k)}
    assert not changed, f"importing changed the environment: {sorted(changed)}"
    assert torch.get_num_threads() == threads
    from seq2seq.kernels import activation, int8
    assert activation._cpu_tanh is None and int8._chosen is None  # no choice made ...
    assert int8.default_kernel.cache_info().currsize == 0  # ... and no probe run
    sys.setprofile(watch)  # the watch itself sees the package's torch operations
    activation.tanh(torch.ones(3))
    sys.setprofile(None)
    assert calls, "the watch saw nothing"
    print(len(names))
""")


def test_importing_every_module_changes_nothing_and_times_nothing():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split()[-1]) >= 50  # every module was imported
