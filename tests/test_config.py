from __future__ import annotations

import pytest

from seq2seq.config import ConfigError, load_recipe

from .conftest import ROOT

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_loads_and_accepts_max_steps(path):
    recipe = load_recipe(path, ["train.max_steps=3"])
    assert recipe.train.max_steps == 3
    assert recipe.name == path.stem


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_key_has_a_comment(path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if ":" in line and not line.lstrip().startswith("#") and line.startswith("  "):
            assert "#" in line, f"{path.name}:{number} has no comment: {line.strip()}"


def test_misspelled_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown key 'model.hiden_size'.*did you mean 'model\.\w+'") as e:
        load_recipe(ROOT / "recipes/en-fr.yaml", ["model.hiden_size=128"])
    with pytest.raises(ConfigError, match=r"did you mean 'model.decoder_hidden'"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["model.decoder_hiden=128"])
    with pytest.raises(ConfigError, match=r"unknown key 'trian'; did you mean 'train'"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["trian.max_steps=1"])
    assert "hiden" in str(e.value)


def test_wrong_types_and_choices_fail_with_the_key():
    with pytest.raises(ConfigError, match=r"train.max_steps must be of type int, got 'lots'"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["train.max_steps=lots"])
    with pytest.raises(ConfigError, match=r"model.attention must be one of .*did you mean 'luong'"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["model.attention=loung"])
    with pytest.raises(ConfigError, match=r"model.dropout must be in \[0, 1\)"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["model.dropout=1.5"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["max_steps"])


def test_overrides_are_typed_and_ints_pass_as_floats():
    r = load_recipe(ROOT / "recipes/en-fr.yaml", ["train.lr=1", "model.decoder_hidden=128", "train.betas=[0.8, 0.9]"])
    assert r.train.lr == 1.0 and isinstance(r.train.lr, float)
    assert r.model.decoder_hidden == 128 and r.train.betas == (0.8, 0.9)


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="share_embeddings needs tokenizer.joint"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["model.share_embeddings=true", "model.target_vocabulary=all",
                                                  "tokenizer.joint=false"])  # fmt: skip
    with pytest.raises(ConfigError, match="share_embeddings needs model.target_vocabulary: all"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["model.share_embeddings=true", "model.target_vocabulary=seen"])
    with pytest.raises(ConfigError, match="fp16 needs train.device: cuda"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["train.precision=fp16", "train.device=cpu"])
    with pytest.raises(ConfigError, match="context_feeding needs model.input_feeding: false"):
        load_recipe(ROOT / "recipes/en-fr-medium.yaml", ["model.context_feeding=true"])
    # `auto` is a GPU where there is one: the recipe is valid, and train.py checks the device it resolves to
    assert load_recipe(ROOT / "recipes/en-fr.yaml", ["train.precision=fp16"]).train.device == "auto"


def test_budget_schedule_falls_linearly_to_min_lr_as_the_budget_runs_out():
    from seq2seq.trainer import learning_rate

    no_warmup = ["train.lr=0.001", "train.warmup_steps=0"]  # the budget schedule alone
    by_steps = load_recipe(ROOT / "recipes/en-fr.yaml", ["train.schedule=budget", "train.max_minutes=0", *no_warmup,
                                                         "train.max_steps=100", "train.decay_start=0.5"]).train  # fmt: skip
    assert learning_rate(10, by_steps) == learning_rate(50, by_steps) == 1e-3  # constant until half the budget
    assert learning_rate(75, by_steps) == pytest.approx(5e-4)
    assert learning_rate(100, by_steps) == by_steps.min_lr
    by_time = load_recipe(ROOT / "recipes/en-fr.yaml", ["train.schedule=budget", "train.max_minutes=10", *no_warmup]).train
    assert learning_rate(1, by_time, elapsed=0.0) == 1e-3
    assert learning_rate(1, by_time, elapsed=150.0) == pytest.approx(7.5e-4)  # a quarter of 10 minutes spent
    assert learning_rate(99999, by_time, elapsed=900.0) == by_time.min_lr  # over budget (the last step's validation)
    with pytest.raises(ConfigError, match="budget decays the lr over"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["train.schedule=budget", "train.max_minutes=0"])


def test_recipe_warms_up_linearly_to_its_peak_then_the_plateau_scale_applies():
    from seq2seq.trainer import learning_rate

    cfg = load_recipe(ROOT / "recipes/en-fr.yaml").train
    assert (cfg.schedule, cfg.warmup_steps, cfg.lr) == ("plateau", 500, 0.002)
    assert learning_rate(100, cfg) == pytest.approx(0.0004)  # (step 1: train.min_lr, the floor)
    assert learning_rate(250, cfg) == pytest.approx(0.001)
    assert learning_rate(500, cfg) == learning_rate(4000, cfg) == 0.002
    assert learning_rate(4000, cfg, lr_scale=0.25) == pytest.approx(0.0005)  # after two halvings
