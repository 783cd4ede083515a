"""Typed configuration: defaults, YAML, --set overrides, validation errors."""

from __future__ import annotations

import pytest

from patentcpc.config import (
    DataConfig,
    LinearConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_yaml,
    merge,
    resolve,
    to_dict,
)
from patentcpc.errors import ConfigError, PatentCPCError


def test_defaults():
    cfg = TrainConfig()
    assert cfg.data.level == "subclass" and cfg.data.on_bad_row == "error" and cfg.seed == 42
    assert cfg.linear == LinearConfig()
    assert DataConfig(text_fields="title, abstract").text_fields == ["title", "abstract"]
    assert DataConfig().load_kwargs() == {"text_fields": None, "label_field": None, "id_field": None,
                                          "level": "subclass", "on_bad_row": "error", "split": "train"}


def test_resolve_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: tfidf\nlinear:\n  C: 2.0\n  ngram_max: 2\ndata:\n  level: class\n")
    cfg = resolve(TrainConfig, str(f), {"data": {"level": "section"}}, ["linear.C=0.25", "linear.class_weight=null"])
    assert cfg.model == "tfidf"
    assert cfg.linear.C == 0.25 and cfg.linear.ngram_max == 2 and cfg.linear.class_weight is None
    assert cfg.data.level == "section"
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg  # the saved config reloads to the same thing


def test_coercion():
    cfg = resolve(TrainConfig, None, None, ["linear.sublinear_tf=no", "linear.max_features=null", "seed=7",
                                            "data.text_fields=title,claims"])
    assert cfg.linear.sublinear_tf is False and cfg.linear.max_features is None and cfg.seed == 7
    assert cfg.data.text_fields == ["title", "claims"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["linear.C=-1"], "linear.C"),
        (["linear.C=abc"], "number"),
        (["linear.classifier=forest"], "svc"),
        (["data.level=subgroup"], "data.level"),
        (["data.on_bad_row=ignore"], "on_bad_row"),
        (["linear.bogus=1"], "unknown option"),
        (["linear.sublinear_tf=maybe"], "true or false"),
        (["seed=1.5"], "integer"),
        (["noequals"], "key=value"),
        (["model=''"], "model must not be empty"),
        (["model="], "model must not be empty"),
        (["data.hf_split=null"], "must not be empty"),
        (["seed=null"], "must not be empty"),
    ],
)
def test_invalid_values_are_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve(TrainConfig, None, None, overrides)
    assert issubclass(ConfigError, PatentCPCError)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("linear: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}


def test_merge_and_overrides_do_not_mutate():
    base = {"a": {"b": 1, "c": 2}}
    assert merge(base, {"a": {"b": 3, "c": None}}) == {"a": {"b": 3, "c": 2}}
    out = apply_overrides(base, ["a.b=5", "x.y=[1, 2]"])
    assert out == {"a": {"b": 5, "c": 2}, "x": {"y": [1, 2]}} and base == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["linear.C=.nan"], r"linear\.C must be a finite number or null"),
        (["linear.C=.inf"], "finite"),
        (["transformer.lr=-.inf"], r"transformer\.lr must be a finite number"),
        (["linear.C=1.0e+400"], "finite"),  # YAML reads it as inf
        (["seed=9223372036854775808"], r"seed must be an integer in -9223372036854775808\.\.9223372036854775807"),
        (["transformer.max_steps=" + "9" * 40], "integer in"),
        (["seed=-9223372036854775809"], "integer in"),
        (["seed=true"], "integer"),  # no bool -> int
        (["linear.C=yes"], "number"),  # no bool -> float
        (["model=123"], "string"),
        (["transformer.pooling=[cls]"], "string"),
        (["data.text_fields=[title, 3]"], "list"),
        (["linear=5"], "mapping of options.*classifier"),
        (["nope.x=1"], r"unknown option\(s\) nope \(known: .*data, .*linear, .*model, .*seed, transformer"),
        (["transformer.nope=1"], r"transformer: unknown option\(s\) nope \(known: .*arch"),
    ],
)
def test_overrides_reject_nan_inf_overflow_wrong_types_unknown_keys(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        resolve(TrainConfig, None, None, overrides)
    assert "\n" not in str(err.value)


def test_yaml_file_values_validated_like_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("linear:\n  C: .nan\n")
    with pytest.raises(ConfigError, match="finite"):
        resolve(TrainConfig, str(f))
    f.write_text("seed: 100000000000000000000\n")
    with pytest.raises(ConfigError, match="integer in"):
        resolve(TrainConfig, str(f))
    f.write_text("transformer:\n  epochs: 2\n  max_steps: 10\n")  # an int where a float is declared is fine
    cfg = resolve(TrainConfig, str(f))
    assert cfg.transformer.epochs == 2.0 and isinstance(cfg.transformer.epochs, float)
    assert cfg.transformer.max_steps == 10


def test_no_hand_written_coercion_left():
    import patentcpc.config as config

    assert not hasattr(config, "_coerce")


def test_exponent_without_a_dot_is_a_number():
    # YAML 1.1 reads 5e-3 as a string; --set and config files mean the number
    cfg = resolve(TrainConfig, None, {}, ["transformer.lr=5e-3", "linear.C=1E2"])
    assert cfg.transformer.lr == 0.005 and cfg.linear.C == 100.0
    with pytest.raises(ConfigError):
        resolve(TrainConfig, None, {}, ["transformer.lr=5e999"])
