import copy

import pytest
import yaml
from snakemake.utils import update_config
from unikio import config as cfg


@pytest.fixture(scope="module")
def schema(request):
    root = request.config.rootpath
    return cfg.load_schema(root / "workflow/schemas/config.schema.yaml")


@pytest.fixture(scope="module")
def default(request):
    root = request.config.rootpath
    return yaml.safe_load((root / "config/config.yaml").read_text())


@pytest.mark.parametrize("profile", ["config/config.yaml", "config/smoke.yaml", "config/mid.yaml", "config/full.yaml"])
def test_shipped_profiles_are_valid(request, schema, default, profile):
    """A profile holds what it changes; Snakemake merges it over the default profile."""
    data = copy.deepcopy(default)
    update_config(data, yaml.safe_load((request.config.rootpath / profile).read_text()))
    assert cfg.explain_invalid(data, schema) is None


@pytest.mark.parametrize("profile", ["config/smoke.yaml", "config/mid.yaml", "config/full.yaml"])
def test_profiles_hold_only_what_they_change(request, default, profile):
    smoke = yaml.safe_load((request.config.rootpath / profile).read_text())

    def same(changed, base, where=""):
        for key, value in changed.items():
            assert key in base, f"{where}{key} is not a key of the default profile"
            if isinstance(value, dict):
                same(value, base[key], f"{where}{key}.")
            else:
                assert value != base[key], f"{where}{key} repeats the default"

    same(smoke, default)
    if profile == "config/full.yaml":  # the study's counts on every row, emulated ones too
        assert smoke["testbed"]["blk"]["reads"] == default["blk"]["reads"] == 100_000
        assert smoke["testbed"]["net"]["packets"] == smoke["net"]["packets"] == 100_000
    else:
        assert smoke["blk"]["reads"] < default["blk"]["reads"]


def test_every_key_of_the_default_profile_has_a_comment(request):
    lines = (request.config.rootpath / "config/config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if ":" in line and not line.lstrip().startswith("#"):
            previous = lines[i - 1].strip() if i else ""
            assert "#" in line or previous.startswith("#"), f"no comment for: {line!r}"


def test_typo_names_the_unknown_key(schema, default):
    bad = copy.deepcopy(default)
    bad["blk"]["raeds"] = 5
    message = cfg.explain_invalid(bad, schema)
    assert "'raeds'" in message and "blk" in message


def test_wrong_type_names_the_key(schema, default):
    bad = copy.deepcopy(default)
    bad["blk"]["reads"] = "many"
    assert cfg.explain_invalid(bad, schema).startswith("config key blk.reads")


def test_unknown_arch_lists_allowed_values(schema, default):
    bad = copy.deepcopy(default)
    bad["archs"] = ["riscv64"]
    message = cfg.explain_invalid(bad, schema)
    assert "archs.0" in message and "x86_64" in message and "aarch64" in message


def test_unknown_platform_is_rejected(schema, default):
    bad = copy.deepcopy(default)
    bad["blk"]["platforms"] = ["host", "xen"]
    assert "blk.platforms.1" in cfg.explain_invalid(bad, schema)


def test_missing_key_is_named(schema, default):
    bad = copy.deepcopy(default)
    del bad["net"]["sizes"]
    assert "sizes" in cfg.explain_invalid(bad, schema)


def test_block_size_must_suit_o_direct(schema, default):
    bad = copy.deepcopy(default)
    bad["blk"]["block_size"] = 1000
    assert "blk.block_size" in cfg.explain_invalid(bad, schema)


def test_measurement_defaults(default):
    assert default["measure"] == {"cpu": "auto"}
    assert default["conditions"] == {"busy_load_per_core": 0.5}


@pytest.mark.parametrize("cpu", ["auto", 0, 3, 255])
def test_measure_cpu_is_a_cpu_number_or_auto(schema, default, cpu):
    data = copy.deepcopy(default)
    data["measure"]["cpu"] = cpu
    assert cfg.explain_invalid(data, schema) is None


@pytest.mark.parametrize("cpu, message", [
    (-1, "config key measure.cpu is invalid: -1 is less than the minimum of 0"),
    ("first", "config key measure.cpu is invalid: 'first' does not match '^auto$'"),
    ("AUTO", "config key measure.cpu is invalid: 'AUTO' does not match '^auto$'"),
    (1.5, "config key measure.cpu is invalid: 1.5 is not of type 'integer', 'string'"),
    (True, "config key measure.cpu is invalid: True is not of type 'integer', 'string'"),
])
def test_a_bad_measure_cpu_is_one_sentence_naming_the_key(schema, default, cpu, message):
    bad = copy.deepcopy(default)
    bad["measure"]["cpu"] = cpu
    assert cfg.explain_invalid(bad, schema) == message


@pytest.mark.parametrize("value, message", [
    (-0.1, "config key conditions.busy_load_per_core is invalid: -0.1 is less than the minimum of 0"),
    ("high", "config key conditions.busy_load_per_core is invalid: 'high' is not of type 'number'"),
])
def test_a_bad_busy_threshold_is_one_sentence_naming_the_key(schema, default, value, message):
    bad = copy.deepcopy(default)
    bad["conditions"]["busy_load_per_core"] = value
    assert cfg.explain_invalid(bad, schema) == message


def test_measure_and_conditions_keys_are_required_and_closed(schema, default):
    bad = copy.deepcopy(default)
    del bad["measure"]["cpu"]
    assert cfg.explain_invalid(bad, schema) == "config key measure lacks 'cpu'; add it (see config/config.yaml)"
    bad = copy.deepcopy(default)
    bad["conditions"]["busy_load"] = 1
    assert cfg.explain_invalid(bad, schema) == ("unknown config key 'busy_load' at conditions; "
                                                "known keys there: busy_load_per_core")


def _properties(node, path=()):
    """Every property node of a schema, with its key path, walking down through `properties`."""
    for key, sub in node.get("properties", {}).items():
        yield path + (key,), sub
        yield from _properties(sub, path + (key,))


def _assembled_defaults(node):
    """One config built from the leaves' defaults (objects from their properties)."""
    if "properties" in node:
        return {key: _assembled_defaults(sub) for key, sub in node["properties"].items()}
    return copy.deepcopy(node["default"])


def _at(config, path):
    for key in path:
        assert isinstance(config, dict) and key in config, f"{'.'.join(path)} is not a key of config/config.yaml"
        config = config[key]
    return config


def test_every_schema_property_has_a_description_and_a_default(schema):
    nodes = list(_properties(schema))
    assert len(nodes) > 50
    for path, node in nodes:
        where = ".".join(path)
        assert isinstance(node.get("description"), str) and node["description"].strip(), f"{where}: no description"
        assert "default" in node, f"{where}: no default"


def test_schema_defaults_equal_the_default_profile(schema, default):
    """config/config.yaml is the user-facing documentation; the schema's defaults may not drift from it."""
    for path, node in _properties(schema):
        value = _at(default, path)
        assert node["default"] == value, f"{'.'.join(path)}: schema default {node['default']!r} != {value!r}"
        assert type(node["default"]) is type(value), f"{'.'.join(path)}: default has another type"
    # Both ways: no key of config/config.yaml lacks a schema property.
    assert _assembled_defaults(schema) == default


def test_schema_defaults_make_a_valid_config(schema):
    config = _assembled_defaults(schema)
    problem = cfg.explain_invalid(config, schema)
    assert problem is None, problem
    for path, node in _properties(schema):
        if "properties" in node:
            assert node["default"] == _at(config, path), f"{'.'.join(path)}: default differs from its properties'"
