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


# ------------------------------------------------------------------------------------------- inheritance


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_variant_recipe_merges_onto_its_base_section_by_section(tmp_path):
    write(tmp_path, "base.yaml", "name: base\ntask: lm\ndata:\n  bptt: 20\n  batch_size: 8\n"
                                 "train:\n  lr: 5\n  betas: [0.8, 0.9]\n")  # fmt: skip
    variant = write(tmp_path, "sub/variant.yaml", "base: ../base.yaml\ndata:\n  bptt: 40\ntrain:\n  betas: [0.5, 0.6]\n")
    r = load_recipe(variant)
    assert (r.name, r.task, r.data.bptt, r.data.batch_size) == ("variant", "lm", 40, 8)  # name: never inherited
    assert r.train.lr == 5.0 and r.train.betas == (0.5, 0.6)  # a list is replaced whole
    chained = write(tmp_path, "sub/chained.yaml", "base: variant.yaml\nname: mine\nmodel:\ntrain:\n  lr: 1\n")
    r = load_recipe(chained, ["data.batch_size=4"])
    assert (r.name, r.data.bptt, r.data.batch_size, r.train.lr, r.train.betas) == ("mine", 40, 4, 1.0, (0.5, 0.6))
    assert "base" not in r.to_dict() and r.to_dict()["data"]["bptt"] == 40  # the run's recipe.yaml is flat


def test_recipe_bases_that_loop_or_are_missing_are_named(tmp_path):
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_recipe(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_recipe(write(tmp_path, "self.yaml", "base: self.yaml\n"))
    with pytest.raises(ConfigError, match=r"orphan\.yaml: its base .*nowhere\.yaml does not exist"):
        load_recipe(write(tmp_path, "orphan.yaml", "base: nowhere.yaml\n"))
    with pytest.raises(ConfigError, match="base must name a recipe file"):
        load_recipe(write(tmp_path, "list.yaml", "base: [a.yaml]\n"))
    with pytest.raises(ConfigError, match="base is read from its file only"):
        load_recipe(ROOT / "recipes/en-fr.yaml", ["base=en-fr-fused.yaml"])


def test_shipped_variants_say_only_what_differs():
    base, fused = load_recipe(ROOT / "recipes/en-fr.yaml"), load_recipe(ROOT / "recipes/en-fr-fused.yaml")
    assert (fused.model.attention, fused.model.input_feeding, fused.train.warmup_steps) == ("luong", False, 0)
    assert fused.data == base.data and fused.tokenizer == base.tokenizer and fused.name == "en-fr-fused"
    assert "base:" in (ROOT / "recipes/lm-ptb-medium-fast.yaml").read_text()


# ------------------------------------------------------------------------------------------- valid_every


@pytest.mark.parametrize(("given", "per_epoch", "steps"), [
    (250, 40, 250), ("1 epoch", 40, 40), ("2 epochs", 40, 80), ("0.5 epoch", 41, 20), (" .25 epochs ", 40, 10),
    ("0.001 epoch", 40, 1),
])  # fmt: skip
def test_valid_every_takes_steps_or_epochs(given, per_epoch, steps):
    cfg = load_recipe(ROOT / "recipes/en-fr.yaml", [f"train.valid_every={given!r}" if isinstance(given, str)
                                                    else f"train.valid_every={given}"]).train  # fmt: skip
    assert cfg.valid_every == given
    assert cfg.resolve_epochs(per_epoch).valid_every == steps


@pytest.mark.parametrize("given", ["0", "-3", "'0 epochs'", "'1 epoc'", "'epoch'", "'1.5'", "'2 steps'", "'1e2 epochs'",
                                   "2.5", "true", "[1]", "'-1 epoch'"])  # fmt: skip
def test_valid_every_refuses_anything_else(given):
    with pytest.raises(ConfigError, match="train.valid_every"):
        load_recipe(ROOT / "recipes/en-fr.yaml", [f"train.valid_every={given}"])


# ------------------------------------------------------------------------------------------- range checks

EN_FR, LM, SP500 = ROOT / "recipes/en-fr.yaml", ROOT / "recipes/lm-ptb.yaml", ROOT / "recipes/sp500.yaml"
BAD = [  # (recipe, override, the message's start)
    (EN_FR, "tokenizer.vocab_size=7", "tokenizer.vocab_size must be >= 8"),
    (EN_FR, "tokenizer.character_coverage=0", r"tokenizer.character_coverage must be in \(0, 1\]"),
    (EN_FR, "tokenizer.character_coverage=1.01", r"tokenizer.character_coverage must be in \(0, 1\]"),
    (EN_FR, "model.embedding_size=0", "model.embedding_size must be >= 1"),
    (EN_FR, "model.encoder_layers=-1", "model.encoder_layers must be >= 1"),
    (EN_FR, "model.decoder_hidden=0", "model.decoder_hidden must be >= 1"),
    (EN_FR, "model.dropout=-0.1", r"model.dropout must be in \[0, 1\)"),
    (EN_FR, "model.sampling_max=1.5", r"model.sampling_max must be in \[0, 1\]"),
    (EN_FR, "model.sampling_steps=0", "model.sampling_steps must be >= 1"),
    (EN_FR, "data.max_len=0", "data.max_len must be >= 1"),
    (EN_FR, "data.valid_limit=-1", "data.valid_limit must be >= 0"),
    (EN_FR, "data.src_lang=''", "data.src_lang must not be empty"),
    (EN_FR, "train.lr=0", "train.lr must be > 0"),
    (EN_FR, "train.lr=.nan", "train.lr must be a finite number, got nan"),
    (EN_FR, "train.lr=.inf", "train.lr must be a finite number, got inf"),
    (EN_FR, "train.lr=-.inf", "train.lr must be a finite number"),
    (EN_FR, "train.lr=" + "9" * 400, "train.lr must be a finite number"),
    (EN_FR, "train.min_lr=.NaN", "train.min_lr must be a finite number"),
    (EN_FR, "train.betas=[0.9, 1.0]", r"train.betas must be in \[0, 1\)"),
    (EN_FR, "train.betas=[-0.1, 0.9]", r"train.betas must be in \[0, 1\)"),
    (EN_FR, "train.betas=[0.9, .nan]", r"train.betas\[1\] must be a finite number"),
    (EN_FR, "train.momentum=1", r"train.momentum must be in \[0, 1\)"),
    (EN_FR, "train.weight_decay=-0.01", "train.weight_decay must be >= 0"),
    (EN_FR, "train.min_lr=-1e-5", "train.min_lr must be >= 0"),
    (EN_FR, "train.clip_norm=-1", "train.clip_norm must be >= 0"),
    (EN_FR, "train.plateau_factor=0", r"train.plateau_factor must be in \(0, 1\)"),
    (EN_FR, "train.plateau_factor=1", r"train.plateau_factor must be in \(0, 1\)"),
    (EN_FR, "train.plateau_patience=0", "train.plateau_patience must be >= 1"),
    (EN_FR, "train.label_smoothing=1", r"train.label_smoothing must be in \[0, 1\)"),
    (EN_FR, "train.decay_start=1", r"train.decay_start must be in \[0, 1\)"),
    (EN_FR, "train.log_every=0", "train.log_every must be >= 1"),
    (EN_FR, "train.seed=-1", r"train.seed must be in \[0, 2\*\*63\)"),
    (EN_FR, f"train.seed={2**63}", r"train.seed must be in \[0, 2\*\*63\)"),
    (EN_FR, "runtime.threads=-1", "runtime.threads must be >= 0"),
    (EN_FR, "train.max_steps=-1", "train.max_steps must be >= 0"),
    (EN_FR, "train.max_epochs=-1", "train.max_epochs must be >= 0"),
    (EN_FR, "train.early_stopping=-1", "train.early_stopping must be >= 0"),
    (EN_FR, "train.warmup_steps=-1", "train.warmup_steps must be >= 0"),
    (EN_FR, "train.max_minutes=-0.5", "train.max_minutes must be >= 0"),
    (EN_FR, "train.batch_tokens=0", "train.batch_tokens must be >= 1"),
    (EN_FR, "train.decode_max_ratio=0", "train.decode_max_ratio must be > 0"),
    (EN_FR, "train.device=gpu", "train.device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    (EN_FR, "train.device='cuda:'", "train.device must be auto"),
    (EN_FR, "train.device=cuda:x", "train.device must be auto"),
    (EN_FR, "train.device='cpu '", "train.device must be auto"),
    (EN_FR, "name=../elsewhere", r"name must be a plain file name \(it becomes runs/<name>\)"),
    (EN_FR, "name=..", "name must be a plain file name"),
    (EN_FR, "name=a\\b", "name must be a plain file name"),
    (EN_FR, "name=''", "name must be a plain file name"),
    (EN_FR, "name=null", "name must be of type str"),
    (EN_FR, "task=[lm]", r"unknown task \['lm'\]"),
    (EN_FR, "task=translaton", "did you mean 'translation'"),
    (LM, "data.vocab_size=4", "data.vocab_size must be >= 8"),
    (LM, "data.bptt=0", "data.bptt must be >= 1"),
    (LM, "data.batch_size=0", "data.batch_size must be >= 1"),
    (LM, "model.layers=0", "model.layers must be >= 1"),
    (LM, "model.embedding_dropout=1", r"model.embedding_dropout must be in \[0, 1\)"),
    (SP500, "data.window=1", "data.window must be >= 2"),
    (SP500, "data.batch_size=0", "data.batch_size must be >= 1"),
    (SP500, "data.test_fraction=0", r"data.test_fraction must be in \(0, 1\)"),
    (SP500, "data.valid_fraction=1", r"data.valid_fraction must be in \(0, 1\)"),
    (SP500, "data.features=[Close, '']", "data.features must not be empty"),
    (SP500, "data.features=[]", "data.features must be a non-empty list"),
    (SP500, "model.hidden_sizes=[50, 0]", "model.hidden_sizes must be >= 1"),
    (SP500, "model.fc_size=0", "model.fc_size must be >= 1"),
    (SP500, "model.dropout=1", r"model.dropout must be in \[0, 1\)"),
]


@pytest.mark.parametrize(("recipe", "override", "message"), BAD, ids=[o[:40] for _, o, _ in BAD])
def test_out_of_range_values_are_refused_naming_the_key(recipe, override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(recipe, [override])


def test_edge_values_in_range_are_accepted():
    r = load_recipe(EN_FR, ["tokenizer.vocab_size=8", "tokenizer.character_coverage=1", "model.sampling_max=1",
                            "train.betas=[0, 0.999]", f"train.seed={2**63 - 1}", "train.device=cuda:3",
                            "train.device=mps", "data.valid_limit=0", "train.clip_norm=0", "name=a..b"])  # fmt: skip
    assert r.train.seed == 2**63 - 1 and r.train.device == "mps" and r.name == "a..b"
    r = load_recipe(SP500, ["data.test_fraction=0.6", "data.valid_fraction=0.6"])  # valid: of the rows before test
    assert r.data.valid_fraction == 0.6


# ------------------------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty; a recipe gives at least its task"),
    ("# only comments\n\n# here\n", "is empty"),
    ("task: lm\ntrain:\n  lr: 1\n  seed: 2\n  lr: 3\n", "key 'lr' is given twice, on lines 3 and 5"),
    ("task: lm\ntask: lm\n", "key 'task' is given twice, on lines 1 and 2"),
    ("train: {lr: 1, lr: 2}\n", "key 'lr' is given twice, on line 1"),
    ("train: [1\n", r"not valid YAML: expected ',' or ']'.*\(line 2, column 1\)"),
    ("- task\n- lm\n", "must be a mapping of sections, got list"),
    ("a: 1\n---\nb: 2\n", "not valid YAML"),
    ("train: !!python/object:os.system x\n", "not valid YAML"),
    ("train: 5\n", "section 'train' must be a mapping, got 5"),
])  # fmt: skip
def test_malformed_recipe_files_are_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(write(tmp_path, "r.yaml", text))


def test_merge_keys_are_not_duplicates(tmp_path):
    text = "x: &common {lr: 1, seed: 3}\n"
    with pytest.raises(ConfigError, match="unknown key 'x'"):  # parsed, then refused as a key, not as YAML
        load_recipe(write(tmp_path, "r.yaml", text + "train:\n  <<: *common\n  lr: 2\n"))


def test_a_recipe_that_is_not_utf8_or_not_a_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xe9 at offset 9\)"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="is a folder, not a recipe file"):
        load_recipe(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nowhere.yaml")


@pytest.mark.parametrize(("override", "message"), [
    ("train.lr=[1", r"override 'train.lr=\[1' is not valid YAML"),
    ("train.lr={", "override 'train.lr={' is not valid YAML"),
    ("train.lr=!!binary x", "override .* is not valid YAML"),
    ("train.lr.x=1", r"override 'train.lr.x=1': train.lr is not a section"),
    ("data.a.b.c=1", "data.a is not a section"),
    ("name.x=1", "'name' is not a section"),
    ("train=5", "section 'train' must be a mapping"),
    ("=5", "must look like section.key=value"),
    ("train.lr", "must look like section.key=value"),
    ("train.lr=true", "train.lr must be of type float, got True"),
])  # fmt: skip
def test_bad_overrides_are_config_errors_naming_the_override(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(EN_FR, [override])
