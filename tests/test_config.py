"""``mmint.config``: the one ``plain`` helper (it replaced three) and where the config tree is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mmint import config
from mmint.config import config_dir, plain
from mmint.errors import InputError


def test_plain_makes_plain_python_values():
    nested = OmegaConf.create({"k": "${x}", "x": 2})
    given = {
        "n": np.int64(3),
        "f": np.float32(0.5),
        "a": np.array([1, 2]),
        "p": Path("a/b.h5ad"),
        "t": (1, None, "s"),
        "c": nested,
        1: True,
    }
    out = plain(given)
    assert out == {
        "n": 3,
        "f": 0.5,
        "a": [1, 2],
        "p": "a/b.h5ad",
        "t": [1, None, "s"],
        "c": {"k": 2, "x": 2},  # interpolations resolved
        "1": True,
    }
    assert type(out["n"]) is int and type(out["c"]) is dict
    assert plain(OmegaConf.create({"a": [1, {"b": "${a.0}"}]})) == {"a": [1, {"b": 1}]}
    given["t"] = [1]
    assert out["t"] == [1, None, "s"]  # a copy


def test_config_dir_order(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "config.yaml").write_text("seed: 0\n")
    monkeypatch.setattr(config, "SHIPPED", shipped)
    monkeypatch.delenv(config.CONFIG_DIR_ENV, raising=False)
    assert config_dir() == shipped  # the package's own tree
    monkeypatch.setenv(config.CONFIG_DIR_ENV, str(tmp_path / "mine"))
    with pytest.raises(InputError, match=r"no config tree \(config.yaml\) found \(\$MMINT_CONFIG"):
        config_dir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text("seed: 1\n")
    assert config_dir() == tmp_path / "mine"  # the variable wins
