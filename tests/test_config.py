"""Tests for refimpl.config: defaults, TOML files with base chains, overrides, strict errors, shortcuts."""

from __future__ import annotations

from pathlib import Path

import pytest

from refimpl.config import ExperimentConfig, load_config, parse_override, to_toml
from refimpl.models import lenet5, resnet_small
from refimpl.prune import expand_constraints, select_params

CONFIGS = Path(__file__).resolve().parents[1] / "paper_repro" / "configs"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


CONSTRAINT = '[[admm.constraints]]\nparams = "conv"\nstructure = "filters"\nsparsity = 0.5\n'


def test_defaults_and_round_trips(tmp_path):
    default = load_config(None, {"admm.constraints": [{"params": "conv", "structure": "filters",
                                                        "sparsity": 0.5}]})
    assert default.pretrain.epochs == ExperimentConfig().pretrain.epochs == 10
    assert default.method == "admm" and default.data.name == "digits" and default.admm.rho == 1e-3
    assert ExperimentConfig.from_dict(default.to_dict()) == default
    path = write(tmp_path / "saved.toml", to_toml(default))
    assert load_config(path) == default


def test_file_overrides_and_dotted_overrides(tmp_path):
    path = write(tmp_path / "exp.toml", 'name = "x"\n[admm]\nepochs = 3\nrho = 0.01\n' + CONSTRAINT)
    config = load_config(path, {"admm.epochs": 7, "data": {"limit_train": 100}})
    assert config.name == "x"
    assert config.admm.epochs == 7 and config.admm.rho == 0.01  # override wins, the file's rho stays
    assert config.data.limit_train == 100
    assert config.retrain.epochs == 5  # untouched default
    assert isinstance(load_config(path, {"admm.lr": 1}).admm.lr, float)  # an int is accepted for a float


def test_base_chain_merges_tables_and_replaces_arrays(tmp_path):
    write(tmp_path / "root.toml", 'seed = 3\n[pretrain]\nepochs = 4\nlr = 0.5\n' + CONSTRAINT)
    write(tmp_path / "mid.toml", 'base = "root.toml"\n[pretrain]\nepochs = 6\n')
    leaf = write(tmp_path / "leaf.toml", 'base = "mid.toml"\nmethod = "magnitude"\n'
                 '[[admm.constraints]]\nparam = "fc1.weight"\nstructure = "unstructured"\nsparsity = 0.9\n')
    config = load_config(leaf)
    assert config.seed == 3 and config.pretrain.epochs == 6 and config.pretrain.lr == 0.5
    assert config.method == "magnitude"
    assert config.admm.constraints == [{"param": "fc1.weight", "structure": "unstructured", "sparsity": 0.9}]


def test_base_cycle_and_missing_base(tmp_path):
    write(tmp_path / "a.toml", 'base = "b.toml"\n')
    write(tmp_path / "b.toml", 'base = "a.toml"\n')
    with pytest.raises(ValueError, match="cycle"):
        load_config(tmp_path / "a.toml")
    write(tmp_path / "c.toml", 'base = "nowhere.toml"\n')
    with pytest.raises(FileNotFoundError, match="nowhere.toml"):
        load_config(tmp_path / "c.toml")


def test_unknown_key_names_key_and_file(tmp_path):
    write(tmp_path / "base.toml", "[admm]\nrhoo = 0.1\n")
    leaf = write(tmp_path / "leaf.toml", 'base = "base.toml"\n')
    with pytest.raises(ValueError, match=r"unknown key 'admm.rhoo' in .*base\.toml"):
        load_config(leaf)
    with pytest.raises(ValueError, match=r"unknown key 'epochz' in <overrides>"):
        load_config(None, {"epochz": 1})


@pytest.mark.parametrize(("text", "match"), [
    ('[pretrain]\nepochs = "ten"\n', r"'pretrain.epochs' in .*bad\.toml must be int"),
    ("[admm]\nrho = true\n", r"'admm.rho' in .*bad\.toml must be float"),
    ("data = 3\n", r"'data' in .*bad\.toml must be a table"),
    ("[data]\nlimit_train = 1.5\n", r"'data.limit_train' in .*bad\.toml must be int or none"),
])
def test_wrong_type_names_key_and_file(tmp_path, text, match):
    with pytest.raises(TypeError, match=match):
        load_config(write(tmp_path / "bad.toml", text))


@pytest.mark.parametrize(("text", "match"), [
    ('[[admm.constraints]]\nparams = "conv"\nstructure = "filters"\nsparsity = 1.5\n',
     r"'admm.constraints\[0\]' in .*bad\.toml: sparsity must lie in \[0, 1\], got 1.5"),
    ('[[admm.constraints]]\nparams = "conv"\nstructure = "rows"\nsparsity = 0.5\n',
     r"'admm.constraints\[0\]' in .*bad\.toml: structure must be one of"),
    ('[[admm.constraints]]\nstructure = "filters"\nsparsity = 0.5\n', "exactly one of 'param'"),
    ('method = "admm"\n', r"'admm.constraints' in .*: method 'admm' needs at least one"),
    ('method = "lottery"\n' + CONSTRAINT, r"'method' in .*bad\.toml: must be one of"),
    ('[data]\nname = "imagenet"\n' + CONSTRAINT, r"'data.name' in .*bad\.toml"),
    ("[admm]\ntargets = [0.5, 0.4]\n" + CONSTRAINT, "strictly increasing"),
    ("[admm]\nrho_growth = 0.5\n" + CONSTRAINT, r"'admm.rho_growth'.*must be >= 1"),
    ('[model]\noptions = {widht = 8}\n' + CONSTRAINT, r"'model.options.widht'"),
    ('[pretrain]\noptimizer = "adam"\nnesterov = true\n' + CONSTRAINT, "Nesterov"),
])
def test_invalid_values_name_key_and_file(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_config(write(tmp_path / "bad.toml", text))


def test_override_value_error_names_overrides():
    with pytest.raises(ValueError, match=r"'pretrain.epochs' in <overrides>: must be >= 0"):
        load_config(None, {"pretrain.epochs": -1, "method": "none"})


def test_rescale_dual_is_a_bool_setting_off_by_default(tmp_path):
    assert ExperimentConfig().admm.rescale_dual is False  # the authors' schedule
    config = load_config(write(tmp_path / "on.toml", "[admm]\nrescale_dual = true\n" + CONSTRAINT))
    assert config.admm.rescale_dual is True
    with pytest.raises(TypeError, match=r"'admm.rescale_dual' in .*bad\.toml must be bool"):
        load_config(write(tmp_path / "bad.toml", "[admm]\nrescale_dual = 1\n" + CONSTRAINT))


def test_parse_override():
    assert parse_override("admm.epochs=2") == ("admm.epochs", 2)
    assert parse_override("admm.rho = 1e-4") == ("admm.rho", 1e-4)
    assert parse_override("data.name=fashion-mnist") == ("data.name", "fashion-mnist")
    assert parse_override("compact.enabled=false") == ("compact.enabled", False)
    with pytest.raises(ValueError, match="key=value"):
        parse_override("admm.epochs")


def test_init_weights_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub" / "exp.toml", '[pretrain]\ninit_weights = "w.npz"\n' + CONSTRAINT)
    assert load_config(path).pretrain.init_weights == str(tmp_path / "sub" / "w.npz")


def test_param_shortcuts_expand_to_the_right_params():
    net = lenet5(input_size=8)
    assert select_params("conv", net) == ["conv1.weight", "conv2.weight"]
    assert select_params("linear", net) == ["fc1.weight", "fc2.weight"]
    assert select_params("all", net) == net.prunable
    chosen = select_params(["fc2.weight", "conv*.weight"], net)
    assert chosen == ["conv1.weight", "conv2.weight", "fc2.weight"]
    with pytest.raises(ValueError, match="'conv9.weight' selects no parameter"):
        select_params(["conv9.weight"], net)
    resnet = resnet_small(depth=8, width=4)
    chosen = select_params("layer2.*.conv*.weight", resnet)
    assert chosen == ["layer2.0.conv1.weight", "layer2.0.conv2.weight"]


def test_expand_constraints_one_per_selected_weight():
    net = lenet5(input_size=8)
    specs = [{"params": "conv", "structure": "shapes", "sparsity": 0.8},
             {"param": "fc1.weight", "structure": "blocks", "block_shape": [4, 4], "keep": 3}]
    constraints = expand_constraints(specs, net)
    assert [(c.param, c.structure, c.sparsity) for c in constraints] == [
        ("conv1.weight", "shapes", 0.8), ("conv2.weight", "shapes", 0.8), ("fc1.weight", "blocks", None)]
    assert constraints[2].params == {"block_shape": (4, 4)} and constraints[2].keep == 3
    with pytest.raises(ValueError, match=r"constraints\[0\].param: the model has no parameter 'fc9.weight'"):
        expand_constraints([{"param": "fc9.weight", "structure": "filters", "sparsity": 0.5}], net)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.name and config.description
    if path.name.startswith("smoke_"):
        assert config.pretrain.epochs + config.admm.epochs + config.retrain.epochs <= 6  # CI budget


def test_magnitude_twins_differ_from_admm_only_in_method_and_names():
    for admm, twin in [("lenet5_fashion_admm_unstructured_95", "lenet5_fashion_magnitude_95"),
                       ("lenet5_fashion_admm_unstructured_98", "lenet5_fashion_magnitude_98"),
                       ("lenet5_fashion_admm_filter_shape", "lenet5_fashion_magnitude_filter_shape")]:
        a = load_config(CONFIGS / f"{admm}.toml").to_dict()
        m = load_config(CONFIGS / f"{twin}.toml").to_dict()
        assert m["method"] == "magnitude" and a["method"] == "admm"
        for d in (a, m):
            del d["method"], d["name"], d["description"]
        assert a == m



def test_constraint_expansion_is_still_importable_from_config():
    import refimpl.config
    import refimpl.prune

    assert refimpl.config.expand_constraints is refimpl.prune.expand_constraints
    assert refimpl.config.select_params is refimpl.prune.select_params
    assert refimpl.config.PARAM_SHORTCUTS == refimpl.prune.PARAM_SHORTCUTS == ("all", "conv", "linear")


@pytest.mark.parametrize(("text", "match"), [
    ('method = "none"\n[data]\nname = "npz"\n', r"'data.name' in .*bad\.toml: 'npz' needs data.path"),
    ('method = "none"\n[data]\npath = "mine.npz"\n',
     r"'data.path' in .*bad\.toml: applies only to data.name = 'npz'.*got data.name = 'digits'"),
    ('method = "none"\n[data]\nname = "npz"\npath = "mine.npz"\nroot = "somewhere"\n',
     r"'data.root' in .*bad\.toml: applies to the datasets found by name"),
])
def test_npz_data_needs_path_and_path_needs_npz(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_config(write(tmp_path / "bad.toml", text))


def test_data_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub" / "exp.toml", 'method = "none"\n[data]\nname = "npz"\npath = "d/x.npz"\n')
    assert load_config(path).data.path == str(tmp_path / "sub" / "d" / "x.npz")
    # an override is not in a file: it stays as given (relative to the working directory)
    assert load_config(path, {"data.path": "y.npz"}).data.path == "y.npz"
