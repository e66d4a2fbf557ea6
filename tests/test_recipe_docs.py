"""docs/recipes.md is generated from seq2seq/config.py (scripts/recipe_docs.py) and must agree with it."""

from __future__ import annotations

import dataclasses
import importlib.util
import typing

import pytest

from seq2seq.config import TASKS, TrainConfig

from .conftest import ROOT

REGENERATE = "python scripts/recipe_docs.py > docs/recipes.md"
SECTIONS = sorted({cls for task in TASKS.values() for cls in task.values() if cls} | {TrainConfig}, key=str)


@pytest.fixture(scope="module")
def recipe_docs():
    spec = importlib.util.spec_from_file_location("recipe_docs", ROOT / "scripts" / "recipe_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_recipes_md_is_up_to_date(recipe_docs):
    path = ROOT / "docs" / "recipes.md"
    assert path.exists(), f"docs/recipes.md is missing; generate it: {REGENERATE}"
    assert path.read_text(encoding="utf-8") == recipe_docs.render(), (
        f"docs/recipes.md disagrees with seq2seq/config.py; regenerate it: {REGENERATE}"
    )
    assert recipe_docs.main(["--check"]) == 0


@pytest.mark.parametrize("cls", SECTIONS, ids=[c.__name__ for c in SECTIONS])
def test_every_key_is_documented_and_every_number_range_checked(recipe_docs, cls):
    docs, ranges, hints = recipe_docs.field_docs(cls), recipe_docs.field_ranges(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        assert docs.get(f.name), f"{cls.__name__}.{f.name} has no comment in seq2seq/config.py to document it"
        hint = hints[f.name]  # (valid_every, int | str, is checked by _epochs)
        if hint in (int, float) or (typing.get_origin(hint) is tuple and typing.get_args(hint)[0] in (int, float)):
            assert f.name in ranges, f"{cls.__name__}.{f.name} is a number without a _check_range in __post_init__"


def test_docs_parse_comments_above_and_beside_a_field(recipe_docs):
    from seq2seq.config import TranslationModelConfig

    docs = recipe_docs.field_docs(TranslationModelConfig)
    assert docs["encoder_hidden"] == "encoder units per layer and direction"
    assert docs["bridge"].startswith("The decoder's initial state: tanh of a linear map")
    assert recipe_docs.field_ranges(TrainConfig)["plateau_factor"] == "in (0, 1)"
    assert recipe_docs.yaml_text("off") == "'off'" and recipe_docs.yaml_text((0.9, 0.999)) == "[0.9, 0.999]"
