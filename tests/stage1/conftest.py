"""Fixtures the Stage-1 tests share."""

import pytest

from tf_twostage.runs.experiment import start_run
from tf_twostage.runs.stage1 import train_stage1
from tf_twostage.utils import io_utils
from tests.conftest import smoke_config


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    """One 2-epoch Stage 1 on the smoke data, per test module: its rules select from the same predictions.

    (config, data, workdir, the recorded training-set probabilities)."""
    workdir = str(tmp_path_factory.mktemp("stage1"))
    config = smoke_config(**{"stage1.epochs": 2})
    strategy, data, _ = start_run(config, workdir)
    train_stage1(config, data, strategy, workdir)
    probabilities = io_utils.read_npz(f"{workdir}/stage1/predictions.npz")["train_probabilities"]
    return config, data, workdir, probabilities
