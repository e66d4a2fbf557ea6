"""docs/recipes.md from the config dataclasses: every recipe key with its type, range, default and meaning.

    python scripts/recipe_docs.py > docs/recipes.md     # regenerate after changing seq2seq/config.py
    python scripts/recipe_docs.py --check               # exit 1 if docs/recipes.md is out of date

A key's meaning is its comment in seq2seq/config.py: the comment at the end of its line, after the comment lines
right above it. Its range comes from the `_check_range` / `_check_text` calls in its class's `__post_init__`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from seq2seq import config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"

INTRO = """\
# Recipe keys

Generated from `seq2seq/config.py` by `python scripts/recipe_docs.py > docs/recipes.md`; do not edit by hand.

A recipe is a YAML file with the top-level keys below and one mapping per section. A key left out takes its
default; an unknown key, a value of the wrong type or out of range, a key given twice or an empty file stops the
command before any work, naming the key (and the nearest valid one for a misspelling).

**Inheritance.** `base: en-fr.yaml` starts from another recipe, a path relative to this recipe's folder, and the
recipe then gives only what differs. Sections merge key by key; a list (`train.betas`, `data.features`) is
replaced whole; `name` is never inherited (it defaults to the recipe's file name without `.yaml`). A base may have
a base of its own; a cycle or a missing file is an error naming it. The run directory's `recipe.yaml` holds the
full, flat recipe.

```yaml
# recipes/en-fr-fused.yaml
base: en-fr.yaml
model:
  attention: luong
  input_feeding: false
```

**Overrides.** `section.key=value` after the recipe on the command line (or in `load_recipe(path, overrides)`)
sets one key after the recipe and its bases are read; the value is read as YAML, so `train.betas=[0.9, 0.98]`,
`model.bridge=false` and `train.valid_every="1 epoch"` work, and `name=...` and `task=...` set the top-level keys.
Overrides apply in order; the last one wins.

    python -m seq2seq.train recipes/en-fr.yaml train.max_steps=200 model.decoder_hidden=256

**Validation every N steps or epochs.** `train.valid_every` is a whole number of steps (`250`) or a number of
epochs written `"<number> epoch"` or `"<number> epochs"` (`"1 epoch"`, `"2 epochs"`, `"0.5 epoch"`; the number is
positive and may have a fraction). Epochs become steps once training starts: the number times the batches in one
epoch (on each process, under torchrun), rounded, at least 1.
"""

DEFAULTS = {"name": "the recipe's file name without `.yaml`", "task": f"`{config.DEFAULT_TASK}`"}  # Recipe's own fields have none
BASE_ROW = "| `base` | text | | a recipe to start from, relative to this recipe's folder (see Inheritance above) |\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {DOCS} differs from what is generated")
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        sys.stdout.write(text)
        return 0
    if DOCS.exists() and DOCS.read_text(encoding="utf-8") == text:
        return 0
    print(f"{DOCS} is out of date; regenerate it: python scripts/recipe_docs.py > docs/recipes.md", file=sys.stderr)
    return 1


def render() -> str:
    top = _table(config.Recipe, skip=("data", "tokenizer", "model", "train", "runtime"))  # sections: tables below
    out = [INTRO, "\n## Top-level keys\n\n", *top, BASE_ROW]
    for task, sections in config.TASKS.items():
        out.append(f"\n## {task}\n")
        for section, cls in sections.items():
            if cls is not None:
                out += [f"\n### {section}\n\n", *_table(cls)]
    out += ["\n## train (every task)\n\n", *_table(config.TrainConfig)]
    out += ["\n## runtime (every task)\n\n", *_table(config.RuntimeConfig)]
    return "".join(out)


def _table(cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    docs, ranges, hints = field_docs(cls), field_ranges(cls), typing.get_type_hints(cls)
    rows = ["| key | type / choices | default | meaning |\n", "|---|---|---|---|\n"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, limit = type_text(hints[f.name]), ranges.get(f.name, "")
        kind = f"non-empty {kind}" if limit == "not empty" else f"{kind} {limit}".strip()
        default = _default(f)
        shown = DEFAULTS.get(f.name, "") if default is dataclasses.MISSING else f"`{yaml_text(default)}`"
        rows.append(f"| `{f.name}` | {_cell(kind)} | {_cell(shown)} | {_cell(docs.get(f.name, '')).replace('<', '&lt;')} |\n")
    return rows


def field_docs(cls: type) -> dict[str, str]:
    """Each field's comment: the full-line comments right above the field, then the one at the end of its line."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    docs = {}
    for stmt in ast.parse(source).body[0].body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        above, line = [], stmt.lineno - 1
        while line >= 1 and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        own = [comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in comments]
        docs[stmt.target.id] = " ".join(c for c in above + own if c and c != "fmt: skip")
    return docs


def field_ranges(cls: type) -> dict[str, str]:
    """What `__post_init__` checks of each field with `_check_range` ("in [0, 1)", ">= 1") or `_check_text`."""
    ranges: dict[str, str] = {}
    post_init = getattr(cls, "__post_init__", None)
    if post_init is None:
        return ranges
    for call in ast.walk(ast.parse(inspect.getsource(post_init).strip())):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            continue
        if call.func.id == "_check_range":  # _check_range(self, section, interval, *names)
            interval = _string(call.args[2])
            shown = f"in {interval}" if interval[0] in "[(" else interval
            ranges.update((_string(a), shown) for a in call.args[3:])
        elif call.func.id == "_check_text":  # _check_text(self, section, *names)
            ranges.update((_string(a), "not empty") for a in call.args[2:])
    return ranges


def _string(node: ast.expr) -> str:
    """A string constant, or an f-string of names from seq2seq.config (f">= {MIN_VOCAB}")."""
    if isinstance(node, ast.Constant):
        return node.value
    assert isinstance(node, ast.JoinedStr), ast.dump(node)
    return "".join(part.value if isinstance(part, ast.Constant) else str(getattr(config, part.value.id))
                   for part in node.values)  # fmt: skip


def type_text(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " | ".join(f"`{yaml_text(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in args if a is not type(None))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_text(args[0])}"
        return f"[{', '.join(type_text(a) for a in args)}]"
    return {int: "integer", float: "number", bool: "`true` | `false`", str: "text"}[hint]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


def yaml_text(value: Any) -> str:
    """A value as a recipe writes it: 0.001, [0.9, 0.999], 'off' (quoted: YAML would read a bare off as false)."""
    text = yaml.safe_dump(list(value) if isinstance(value, tuple) else value, default_flow_style=True, width=1000)
    return text.strip().removesuffix("...").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    raise SystemExit(main())
