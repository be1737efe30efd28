import subprocess
import sys

import pytest

from tf_twostage.config import base_config
from tf_twostage.config.checks import validate_config
from tf_twostage.runs.experiment import METHODS

REQUIRED_KEYS = ["seed", "data.name", "data.dir", "noise.type", "noise.rate", "method", "stage2.algorithm",
                 "batch_size", "stage1.epochs", "stage2.epochs"]


@pytest.mark.parametrize("preset", ["mnist5k", "mnist", "cifar10", "clothing1m", "smoke"])
def test_every_preset_has_the_contract_keys(preset):
    import importlib.util

    spec = importlib.util.spec_from_file_location(preset, f"configs/{preset}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key in REQUIRED_KEYS:
        node = config
        for part in key.split("."):
            node = node[part]
    validate_config(config, methods=tuple(METHODS))


def test_locked_config_refuses_unknown_keys_in_code():
    config = base_config()
    with pytest.raises(AttributeError):
        config.noise.ratee = 0.3


def _load_with_flags(*flags):
    script = (
        "import sys\n"
        "from absl import flags\n"
        "from ml_collections import config_flags\n"
        "c = config_flags.DEFINE_config_file('config')\n"
        "flags.FLAGS(sys.argv)\n"
        "print(c.value.noise.rate, c.value.seed)\n"
    )
    return subprocess.run([sys.executable, "-c", script, "--config=configs/mnist5k.py", *flags],
                          capture_output=True, text=True)


def test_command_line_overrides_known_keys_and_refuses_unknown_ones():
    ok = _load_with_flags("--config.noise.rate=0.2", "--config.seed=3")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["0.2", "3"]
    bad = _load_with_flags("--config.noise.ratee=0.2")
    assert bad.returncode != 0
    assert "ratee" in bad.stderr


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("noise.rate", 1.5, r"noise.rate must be in \[0, 1\], got 1.5"),
        ("noise.type", "gaussian", r"noise.type must be one of none, symmetric, .*got 'gaussian'"),
        ("data.name", "imagenet", r"data.name must be one of .*got 'imagenet'"),
        ("method", "magic", r"method must be one of ce; got 'magic'"),
        ("batch_size", 0, r"batch_size must be an integer >= 1, got 0"),
        ("stage1.epochs", 0, r"stage1.epochs must be an integer >= 1"),
        ("stage2.algorithm", "mixmatch", r"stage2.algorithm must be one of pi, temporal_ensembling"),
        ("data.val_fraction", -0.1, r"data.val_fraction must be in"),
        ("seed", -1, r"seed must be an integer >= 0"),
        ("train.dtype_policy", "float16",
         r"train.dtype_policy must be one of float32, mixed_float16, mixed_bfloat16; got 'float16'"),
        ("train.eval_batch_size", -1, r"train.eval_batch_size must be an integer >= 0, got -1"),
        ("train.micro_batches", 0, r"train.micro_batches must be an integer >= 1, got 0"),
        ("train.micro_batches", 200, r"train.micro_batches=200 is more than batch_size=128: each micro-batch"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(key, value, message):
    config = base_config()
    section, _, leaf = key.rpartition(".")
    (config[section] if section else config)[leaf] = value
    with pytest.raises(ValueError, match=message):
        validate_config(config, methods=("ce",))


def test_the_evaluation_batch_size_is_derived_from_the_training_batch_size_unless_set():
    from tf_twostage.config.base import eval_batch_size

    config = base_config()
    config.batch_size = 48
    assert eval_batch_size(config) == 96
    config.train.eval_batch_size = 20
    assert eval_batch_size(config) == 20


def test_jit_compile_must_be_a_bool():
    from tf_twostage.training.precision import compile_options

    config = base_config()
    assert compile_options(config.train) == {"jit_compile": False}
    with pytest.raises(TypeError):  # the locked ConfigDict keeps the key's type
        config.train.jit_compile = "yes"
