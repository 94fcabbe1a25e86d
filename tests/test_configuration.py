"""Config loading: _base_ merge, one-level rule, schema validation and overrides."""

from dataclasses import dataclass, field

import pytest

from renderlss.configuration import ConfigError, apply_overrides, from_dict, read_config_file
from renderlss.engine.experiment import load_experiment
from renderlss.geometry.grid import VoxelGrid


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Experiment:
    optim: Optim = field(default_factory=Optim)
    grid: VoxelGrid = field(default_factory=VoxelGrid)
    name: str = "x"


def write(path, text):
    path.write_text(text)
    return path


def test_base_merge_and_schema(tmp_path):
    write(tmp_path / "base.py", "optim = dict(lr=0.1, betas=[0.8, 0.9])\nname = 'base'\n")
    cfg = write(tmp_path / "exp.py", "_base_ = 'base.py'\noptim = dict(lr=2)\n")
    raw = read_config_file(cfg)
    assert raw == {"optim": {"lr": 2, "betas": [0.8, 0.9]}, "name": "base"}
    exp = from_dict(Experiment, raw)
    assert exp.optim.lr == 2.0 and isinstance(exp.optim.lr, float)
    assert exp.optim.betas == (0.8, 0.9)


def test_unknown_key_names_path_and_suggestion():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'optim.lrr'; did you mean 'optim.lr'"
    ):
        from_dict(Experiment, {"optim": {"lrr": 1.0}})


def test_wrong_type_and_length_rejected():
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        from_dict(Experiment, {"optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="expected 2 values"):
        from_dict(Experiment, {"optim": {"betas": [0.9]}})


def test_nested_base_is_refused(tmp_path):
    write(tmp_path / "a.py", "name = 'a'\n")
    write(tmp_path / "b.py", "_base_ = 'a.py'\n")
    cfg = write(tmp_path / "c.py", "_base_ = ['b.py']\n")
    with pytest.raises(ConfigError, match="one level only"):
        read_config_file(cfg)


def test_overrides_are_literals_and_validated(tmp_path):
    raw = apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=0.5", "name=run7"])
    assert from_dict(Experiment, raw).optim.lr == 0.5
    assert raw["name"] == "run7"
    with pytest.raises(ConfigError, match="did you mean 'grid.voxel_size'"):
        from_dict(Experiment, apply_overrides(raw, ["grid.voxel_sise=[1,1,1]"]))


def test_schema_validate_hook_runs():
    with pytest.raises(ValueError, match="whole number"):
        from_dict(Experiment, {"grid": {"voxel_size": [0.3, 0.3, 0.3]}})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "nope.py")


@pytest.mark.parametrize("value", ["1e999", "-1e999"])
def test_non_finite_numbers_are_refused_by_key(value):
    with pytest.raises(ConfigError, match=r"train\.lr: must be a finite number"):
        load_experiment("configs/synthetic_demo.py", [f"train.lr={value}"])
