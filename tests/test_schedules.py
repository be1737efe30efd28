import math

import numpy as np
import pytest

from tf_twostage.training import schedules


def _value(x):
    return float(np.asarray(x))


def test_rampup_goes_from_exp_minus_5_to_one_and_stays():
    assert _value(schedules.rampup(0, 80)) == pytest.approx(math.exp(-5))
    assert _value(schedules.rampup(40, 80)) == pytest.approx(math.exp(-5 * 0.25))
    assert _value(schedules.rampup(80, 80)) == pytest.approx(1.0)
    assert _value(schedules.rampup(500, 80)) == pytest.approx(1.0)
    assert _value(schedules.rampup(3, 0)) == 1.0


def test_rampdown_is_one_until_the_last_epochs_then_exp_minus_12_5_t2():
    assert _value(schedules.rampdown(200, 300, 50)) == 1.0
    assert _value(schedules.rampdown(250, 300, 50)) == 1.0
    assert _value(schedules.rampdown(275, 300, 50)) == pytest.approx(math.exp(-12.5 * 0.25))
    assert _value(schedules.rampdown(300, 300, 50)) == pytest.approx(math.exp(-12.5))


def test_consistency_weight_is_zero_in_the_first_epoch_then_ramps_to_max():
    assert _value(schedules.consistency_weight(0, 30.0, 80)) == 0.0
    assert _value(schedules.consistency_weight(0.5, 30.0, 80)) == 0.0
    assert _value(schedules.consistency_weight(1, 30.0, 80)) == pytest.approx(30 * math.exp(-5 * (79 / 80) ** 2))
    assert _value(schedules.consistency_weight(100, 30.0, 80)) == pytest.approx(30.0)
    weights = np.asarray(schedules.consistency_weight(np.arange(1, 90, dtype=np.float32), 1.0, 80))
    assert np.all(np.diff(weights) >= 0)


def test_max_weight_scales_with_the_labeled_fraction():
    assert schedules.scaled_max_weight(100.0, 1000, 4000) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="num_examples must be > 0, got 0"):
        schedules.scaled_max_weight(100.0, 0, 0)


def test_adam_beta1_moves_from_0_9_to_0_5_during_the_rampdown():
    assert _value(schedules.adam_beta1(0, 300, 50)) == pytest.approx(0.9)
    end = math.exp(-12.5)
    assert _value(schedules.adam_beta1(300, 300, 50)) == pytest.approx(end * 0.9 + (1 - end) * 0.5)


def test_ramped_learning_rate_reads_the_step_and_round_trips_its_config():
    schedule = schedules.RampedLearningRate(0.003, steps_per_epoch=10, total_epochs=300, rampup_length=80,
                                            rampdown_length=50)
    assert _value(schedule(0)) == pytest.approx(0.003 * math.exp(-5))
    assert _value(schedule(10 * 100)) == pytest.approx(0.003)
    assert _value(schedule(10 * 300)) == pytest.approx(0.003 * math.exp(-12.5), rel=1e-4)
    again = schedules.RampedLearningRate(**schedule.get_config())
    assert _value(again(777)) == pytest.approx(_value(schedule(777)))


def test_per_epoch_evaluates_a_schedule_at_the_whole_epoch_of_the_step():
    per_epoch = schedules.PerEpoch(lambda epoch: 10.0 * epoch, steps_per_epoch=4)
    assert [_value(per_epoch(step)) for step in (0, 3, 4, 7, 8, 13)] == [0.0, 0.0, 10.0, 10.0, 20.0, 30.0]
    assert _value(schedules.PerEpoch(2.5, steps_per_epoch=4)(100)) == 2.5
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1, got 0"):
        schedules.PerEpoch(1.0, steps_per_epoch=0)
