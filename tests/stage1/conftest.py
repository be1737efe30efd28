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


def confidence_config(config, **stage1):
    """A copy of `stage1_run`'s config ranking with the confidence rule over a 5-neighbour graph, with `stage1`
    keys set on top (e.g. propagation="pixels")."""
    config = config.copy_and_resolve_references()
    config.stage1.rule = "confidence"
    config.stage1.propagation_neighbours = 5
    for key, value in stage1.items():
        config.stage1[key] = value
    return config
