"""Named model variants: the registry, its overrides and the YAML files that must agree with it."""

import os

import pytest

from i2pmae.checkpoints import checkpoint_info
from i2pmae.config import get_config, list_variants, load_config, register_variant
from i2pmae.model import I2PMAE, create_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs", "pretrain")


@pytest.mark.parametrize("name", ["paper", "tiny"])
def test_each_variant_equals_its_config_file(name):
    assert load_config(os.path.join(CONFIG_DIR, f"{name}.yaml")) == get_config(name)


def test_variants_are_listed_and_unknown_names_are_refused():
    assert {"paper", "tiny"} <= set(list_variants())
    with pytest.raises(ValueError, match="unknown model variant 'huge'.*paper"):
        get_config("huge")

    def tiny():
        return {}

    with pytest.raises(ValueError, match="'tiny' is already registered"):
        register_variant(tiny)


def test_overrides_edit_a_variant_and_are_validated():
    cfg = get_config("tiny", masking="random", temperature=0.01)
    assert (cfg.masking, cfg.temperature, cfg.num_centers) == ("random", 0.01, (256, 128, 32))
    with pytest.raises(ValueError, match="unknown model config keys: depth"):
        get_config("tiny", depth=3)
    with pytest.raises(ValueError, match="mask_ratio"):
        get_config("paper", mask_ratio=1.0)


def test_create_model_builds_the_variant():
    model = create_model("tiny", masking="random")
    assert isinstance(model, I2PMAE) and model.cfg == get_config("tiny", masking="random")
    for name in ("i2pmae_tiny_modelnet10", "i2pmae_tiny_modelnet40"):  # the default and the ModelNet40 one
        shipped = checkpoint_info(os.path.join(REPO_ROOT, "checkpoints", f"{name}.safetensors"))
        assert shipped["config"] == get_config("tiny")
        assert sum(v.numel() for v in model.state_dict().values()) == shipped["num_parameters"]
