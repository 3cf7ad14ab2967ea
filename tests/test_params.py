"""params.yaml checking: finite numbers in range, and every cross-field rule, for stages and presets alike."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline.params import RULES, ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
VALID = yaml.safe_load((ROOT / "params.yaml").read_text())

# One breaking change per rule, on top of the project's params.yaml; the test below checks the table covers RULES.
RULE_CASES = {
    "warmup_below_epochs": ({"train": {"schedule": "cosine", "epochs": 4, "warmup_epochs": 4}}, "train.warmup_epochs=4 must be below train.epochs=4"),
    "mix_alpha_only_with_mix": ({"train": {"mix_alpha": 0.4}}, "train.mix_alpha=0.4 applies only with train.mix=mixup or cutmix"),
    "members_are_models": ({"ensemble": {"members": ["riv_base", "vgg99"]}}, "ensemble.members has vgg99, not under `models`"),
    "min_agreement_only_for_plurality": ({"relabel": {"scheme": "majority", "min_agreement": 0.7}}, "relabel.min_agreement=0.7 applies to relabel.scheme=plurality only"),
    "weight_only_with_teacher": ({"distill": {"weight": 0.8}}, "distill.weight=0.8 applies only with distill.teacher"),
    "relabel_needs_votes": ({"data": {"dataset": "fer2013"}}, "relabel.scheme=majority needs the FER+ votes"),
    "ferplus8_needs_relabel": ({"data": {"classes": "ferplus8"}, "relabel": {"scheme": "blend"}}, "data.classes=ferplus8 needs FER+ labels (contempt), which relabel.scheme=blend keeps out"),
    "apollo_is_fer6": ({"data": {"dataset": "apollo6"}, "relabel": {"scheme": "none"}}, "data.dataset=apollo6 has 6 classes"),
    "image_folders_need_val": ({"data": {"dataset": "fer2013-images", "val_fraction": 0}, "relabel": {"scheme": "none"}}, "data.val_fraction=0 leaves fer2013-images without a val split"),
}


def merged(change: dict, base: dict = VALID) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = merged(value, base.get(key) or {}) if isinstance(value, dict) and value else value
    return out


def test_every_rule_has_a_case():
    assert set(RULE_CASES) == set(RULES)


@pytest.mark.parametrize("scheme", ["none", "blend"])
def test_ferplus8_refuses_each_scheme_that_keeps_fer2013_labels(scheme):
    with pytest.raises(ParamsError, match=re.escape(f"which relabel.scheme={scheme} keeps out")):
        parse_params(merged({"data": {"classes": "ferplus8"}, "relabel": {"scheme": scheme}}))


@pytest.mark.parametrize("name", sorted(RULE_CASES))
def test_each_rule_refuses_its_case_and_only_that_rule_fires(name):
    change, message = RULE_CASES[name]
    params = parse_params(VALID)
    for rule in RULES.values():
        rule(params)  # the project's own params pass every rule
    with pytest.raises(ParamsError, match="^params.yaml: " + re.escape(message)):
        parse_params(merged(change))
    broken = _unchecked(merged(change))
    fired = []
    for rule_name, rule in RULES.items():
        try:
            rule(broken)
        except ParamsError:
            fired.append(rule_name)
    assert fired == [name]


def _unchecked(raw: dict):
    """The typed params without the rules (to ask each rule on its own)."""
    from pipeline.params import Params, _build

    return _build(Params, raw, "")


def test_a_model_override_is_checked_like_train():
    with pytest.raises(ParamsError, match=r"models.lenet_bn.warmup_epochs=9 must be below models.lenet_bn.epochs=4"):
        parse_params(merged({"models": {"lenet_bn": {"epochs": 4, "warmup_epochs": 9}}}))
    with pytest.raises(ParamsError, match=r"models.riv_base.lr=-1.0 is out of range \(0.0, 10.0\]"):
        parse_params(merged({"models": {"riv_base": {"lr": -1.0}}}))


NUMBER_KEYS = [
    ("train", "lr"), ("train", "epochs"), ("train", "batch_size"), ("train", "label_smoothing"), ("train", "seed"),
    ("data", "val_fraction"), ("data", "seed"), ("clean", "blank_std"), ("relabel", "min_agreement"),
    ("sample", "images_per_class"), ("ensemble", "head_epochs"), ("evaluate", "batch_size"), ("balance", "seed"), ("distill", "weight"),
]


@pytest.mark.parametrize("section, key", NUMBER_KEYS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(section, key, value):
    with pytest.raises(ParamsError, match=rf"^params.yaml: {section}.{key}={value} is not a finite number$") as err:
        parse_params(merged({section: {key: value}}))
    assert err.value.keys == (f"{section}.{key}",)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=5), st.booleans(), st.none()))
def test_any_value_for_a_number_is_accepted_in_range_or_refused_with_one_line(value):
    try:
        params = parse_params(merged({"train": {"lr": value}}))
    except ParamsError as err:
        assert "\n" not in str(err) and str(err).startswith("params.yaml: train.lr")
    else:
        assert math.isfinite(params.train.lr) and 0 < params.train.lr <= 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"seed": 2**40}}, "data.seed=1099511627776 is out of range [0, 4294967295]"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be a whole number, got 2.5"),
        ({"train": {"lr": 0}}, "train.lr=0.0 is out of range (0.0, 10.0]"),
        ({"train": {"lr": "1e-3"}}, "train.lr must be a float, got '1e-3'"),
        ({"models": {"riv_base": 3}}, "models must be a mapping of names to mappings, got"),
        ({"clean": {"blank_std": 200}}, "clean.blank_std=200.0 is out of range [0.0, 128.0]"),
    ],
)
def test_hostile_values_get_one_clear_line(change, message):
    with pytest.raises(ParamsError) as err:
        parse_params(merged(change))
    assert str(err.value).startswith(f"params.yaml: {message}")


def test_load_params_reads_yaml_nan_as_not_finite(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(VALID).replace("lr: 0.001", "lr: .nan"))
    with pytest.raises(ParamsError, match=r"train.lr=nan is not a finite number"):
        load_params(path)


def test_a_preset_is_held_to_the_same_rules(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    preset = tmp_path / "preset.yaml"
    for text, message in [
        ("train: {schedule: cosine, warmup_epochs: 10, epochs: 5}\n", "train.warmup_epochs=10 must be below train.epochs=5"),
        ("ensemble: {members: [nonexistent]}\n", "ensemble.members has nonexistent, not under `models`"),
        ("train: {lr: .nan}\n", "train.lr=nan is not a finite number"),
    ]:
        preset.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.preset", str(preset)], cwd=tmp_path, capture_output=True, text=True,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: params.yaml: {message}") and result.stderr.count("\n") == 1


PRESETS = sorted(path.name for path in ROOT.glob("params-*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_arguments_apply_through_dvcs_set_param_even_for_new_models(tmp_path, preset):
    """`dvc exp run -S` parses Hydra overrides on a struct config: a plain `key=value` for a key params.yaml
    lacks (a model the preset brings in) is refused, so the preset's arguments must add as well as set; and
    the params DVC writes must be the ones the preset check validated, the preset's models and no others."""
    from dvc.utils.hydra import apply_overrides

    from pipeline.preset import apply_preset, set_param_args

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    base, wanted = yaml.safe_load(params.read_text()), yaml.safe_load((ROOT / preset).read_text())
    apply_overrides(params, set_param_args(wanted, base)[1::2])
    applied = yaml.safe_load(params.read_text())
    assert applied == apply_preset(base, wanted)
    assert set(applied["models"]) == set(wanted.get("models", base["models"]))
    load_params(params)


def test_presets_apply_in_order_and_a_presets_models_replace_the_base_set():
    from pipeline.preset import apply_preset

    base = {"train": {"lr": 0.1, "epochs": 3}, "models": {"lenet_bn": {"epochs": 8}, "riv_base": {}}}
    study = {"train": {"lr": 0.01}, "models": {"riv_wide": {}}}
    recipe = {"train": {"lr": 0.002, "optimizer": "adamw"}}
    assert apply_preset(apply_preset(base, study), recipe) == {
        "train": {"lr": 0.002, "epochs": 3, "optimizer": "adamw"},
        "models": {"riv_wide": {}},
    }
    assert apply_preset(base, recipe)["models"] == base["models"]
