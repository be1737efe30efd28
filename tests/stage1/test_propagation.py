"""stage1.propagation: label propagation over the images' own neighbour graph, on tiny arrays and in a run."""

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from tf_twostage.config.checks import validate_config
from tf_twostage.data.source import ImageSplit
from tf_twostage.runs.experiment import METHODS, check_preconditions
from tf_twostage.runs.propagation import pixel_features, propagate_split
from tf_twostage.runs.stage1 import load_selection, select_labels
from tf_twostage.stage1.propagation import (iterations_for, neighbour_graph, one_hot_labels, propagate,
                                            propagated_posterior)
from tf_twostage.stage1.selection import select_confident_labels
from tests.conftest import smoke_config
from tests.stage1.conftest import confidence_config


def _two_clusters():
    """Six points: three near (1, 0, 0), three near (0, 1, 0), each pair of a cluster closest to each other."""
    return np.array([[1.0, 0.0, 0.0], [0.95, 0.05, 0.0], [0.9, 0.0, 0.1],
                     [0.0, 1.0, 0.0], [0.05, 0.95, 0.0], [0.0, 0.9, 0.1]])


def test_the_graph_links_each_point_to_its_nearest_others_and_never_to_itself():
    indices, weights = neighbour_graph(_two_clusters(), 2)
    assert indices.shape == weights.shape == (6, 2)
    for row in range(6):
        assert row not in indices[row]
        assert set(indices[row]) == ({0, 1, 2} if row < 3 else {3, 4, 5}) - {row}
    assert (weights > 0).all() and (weights <= 1).all()
    # Sorted, so the graph does not depend on how the partition ordered the neighbours.
    assert (np.diff(indices, axis=1) > 0).all()


def test_the_graph_refuses_more_neighbours_than_there_are_others():
    with pytest.raises(ValueError, match=r"neighbours must be in \[1, 5\] for 6 examples, got 6"):
        neighbour_graph(_two_clusters(), 6)


def test_propagation_pulls_an_outlier_posterior_towards_its_neighbours():
    # Point 2's own posterior says class 1, but it sits among points predicted class 0.
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    indices, weights = neighbour_graph(_two_clusters(), 2)
    propagated = propagate(probabilities, indices, weights, alpha=0.9)
    np.testing.assert_allclose(propagated.sum(axis=1), 1.0)
    assert propagated[2].argmax() == 0
    assert propagated[:3, 0].min() > 0.5 and propagated[3:, 1].min() > 0.5
    # alpha = 0: no spreading at all.
    np.testing.assert_allclose(propagate(probabilities, indices, weights, alpha=0.0), probabilities)


@pytest.mark.parametrize("alpha", [0.8, 0.99])
def test_propagation_solves_the_closed_form(alpha):
    # 0.99 (the heavy-noise switch's): a fixed 200 steps would leave 0.99^200 = 13% of the series out.
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 5))
    probabilities = rng.dirichlet(np.ones(3), size=40)
    indices, weights = neighbour_graph(features, 4)
    dense = np.zeros((40, 40))
    np.put_along_axis(dense, indices, weights.astype(np.float64), axis=1)
    dense = dense + dense.T
    scale = 1.0 / np.sqrt(dense.sum(axis=1))
    normalized = dense * scale[:, None] * scale[None, :]
    expected = np.linalg.solve(np.eye(40) - alpha * normalized, probabilities)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(propagate(probabilities, indices, weights, alpha=alpha), expected, atol=1e-8)


def test_the_solve_runs_until_the_series_tail_is_negligible_and_at_least_200_steps():
    assert [iterations_for(alpha) for alpha in (0.0, 0.5, 0.9, 0.99)] == [200, 200, 200, 2062]
    assert all(alpha ** iterations_for(alpha) <= 1e-9 for alpha in (0.5, 0.9, 0.95, 0.99, 0.999))


def test_propagation_refuses_a_bad_alpha_and_a_graph_of_another_size():
    indices, weights = neighbour_graph(_two_clusters(), 2)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\), got 1.0"):
        propagate(np.full((6, 2), 0.5), indices, weights, alpha=1.0)
    with pytest.raises(ValueError, match="the graph has 6 rows for 5 posteriors"):
        propagate(np.full((5, 2), 0.5), indices, weights)


def test_too_few_examples_for_a_graph_leave_the_posterior_as_it_is():
    probabilities = np.array([[0.7, 0.3], [0.2, 0.8]])
    np.testing.assert_allclose(propagated_posterior(probabilities, np.eye(2), neighbours=10), probabilities)


def test_config_checks_name_the_bad_propagation_value():
    for key, value, message in (
            ("propagation", "features", r"stage1.propagation must be one of none, pixels; got 'features'"),
            ("propagation_neighbours", 0, r"stage1.propagation_neighbours"),
            ("propagation_alpha", 1.0, r"stage1.propagation_alpha must be in \[0, 1\), got 1.0"),
            ("heavy_noise_alpha", -0.1, r"stage1.heavy_noise_alpha must be in \[0, 1\), got -0.1"),
            ("propagation_blur", -1.0, r"stage1.propagation_blur must be in \[0, 8\], got -1.0"),
            ("propagation_blur", 1e6, r"stage1.propagation_blur must be in \[0, 8\], got 1000000.0"),
            ("propagation_input", "labels", r"stage1.propagation_input=labels .* stage1.propagation=none does not "
                                            r"build: set stage1.propagation=pixels")):
        config = smoke_config(**{f"stage1.{key}": value})
        with pytest.raises(ValueError, match=message):
            validate_config(config, METHODS)


def test_pixel_features_are_the_images_in_order(stage1_run):
    _, data, _, _ = stage1_run
    features = pixel_features(data.train, data.preprocessor, 7)
    assert features.shape == (len(data.train), int(np.prod(data.train.image_shape)))
    expected = data.preprocessor(data.train.images[:3].astype(np.float32))
    np.testing.assert_allclose(features[:3], np.asarray(expected).reshape(3, -1), rtol=1e-6, atol=1e-6)


def test_pixel_features_of_large_images_are_area_resized_to_at_most_32_a_side():
    # 64 x 48 RGB: halved to 32 x 24; each 2x2 block of the image is one value (area mean).
    images = np.zeros((3, 64, 48, 3), np.uint8)
    images[0, :2, :2, 0] = [[10, 20], [30, 40]]
    split = ImageSplit(labels=np.array([0, 1, 0]), index=np.arange(3), num_classes=2, image_shape=(64, 48, 3),
                       images=images)
    features = pixel_features(split, lambda image: tf.cast(image, tf.float32), 2)
    assert features.shape == (3, 32 * 24 * 3)
    assert features[0, 0] == pytest.approx(25.0) and features[0, 1:].max() == 0.0


def test_pixel_features_blur_each_channel_over_height_and_width_alone():
    images = np.zeros((2, 9, 7, 3), np.uint8)
    images[0, 4, 3, 1] = 200  # one bright pixel of the green channel
    images[1, :, :, 2] = 50
    split = ImageSplit(labels=np.array([0, 1]), index=np.arange(2), num_classes=2, image_shape=(9, 7, 3),
                       images=images)
    identity = lambda image: tf.cast(image, tf.float32)  # noqa: E731
    raw = pixel_features(split, identity, 2)
    blurred = pixel_features(split, identity, 2, blur=1.0).reshape(2, 9, 7, 3)
    np.testing.assert_allclose(blurred, scipy.ndimage.gaussian_filter(raw.reshape(2, 9, 7, 3), (0, 1, 1, 0)),
                               rtol=1e-6, atol=1e-6)
    assert blurred[0, :, :, (0, 2)].max() == 0.0  # the other channels get none of it
    assert blurred[0, 4, 3, 1] < 200 and blurred[0, :, :, 1].sum() == pytest.approx(200, rel=1e-5)
    assert blurred[0, 3, 3, 1] > 0 and blurred[0, 3, 3, 1] == pytest.approx(blurred[0, 5, 3, 1])  # evenly around
    np.testing.assert_allclose(blurred[1], images[1].astype(np.float32), rtol=1e-6)  # a flat image stays flat
    np.testing.assert_array_equal(pixel_features(split, identity, 2, blur=0.0), raw)


def test_the_graph_compares_the_images_blurred_as_the_config_says(stage1_run):
    config, data, _, probabilities = stage1_run
    for blur in (0.0, 1.0):
        config = confidence_config(config, propagation="pixels", propagation_blur=blur)
        expected = propagated_posterior(probabilities, pixel_features(data.train, data.preprocessor, 64, blur), 5,
                                        float(config.stage1.propagation_alpha))
        np.testing.assert_allclose(propagate_split(config, data, data.train, probabilities), expected, rtol=1e-5,
                                   atol=1e-6)
    assert config.stage1.propagation_blur == smoke_config().stage1.propagation_blur == 1.0  # the default blurs


def test_selection_ranks_with_the_propagated_posterior(stage1_run):
    config, data, workdir, probabilities = stage1_run
    config = confidence_config(config, propagation="pixels")
    stats = select_labels(config, data, workdir)
    kept = load_selection(workdir, data)
    propagated = propagate_split(config, data, data.train, probabilities)
    expected = select_confident_labels(propagated, data.train.labels, float(config.stage1.threshold),
                                       float(config.stage1.floor_fraction), top_up=config.stage1.top_up)
    np.testing.assert_array_equal(kept, expected)
    assert stats["propagation"] == "pixels"
    assert not np.allclose(propagated, probabilities)  # it did change the ranking posterior


def test_the_run_refuses_data_over_the_graphs_limit_before_training(stage1_run, monkeypatch):
    config, data, _, _ = stage1_run
    config = config.copy_and_resolve_references()
    config.method = "two_stage"
    config.stage1.propagation = "pixels"
    monkeypatch.setattr("tf_twostage.runs.propagation.MAX_EXAMPLES", len(data.train) - 1)
    with pytest.raises(ValueError, match=rf"stage1.propagation=pixels compares every pair of images and allows "
                                         rf"at most {len(data.train) - 1:,} per split; this run's largest split has "
                                         rf"{len(data.train):,}: set stage1.propagation=none"):
        check_preconditions(config, data)
    config.method = "improved_baseline"  # it runs Stage 1's selection too
    with pytest.raises(ValueError, match="stage1.propagation=pixels compares every pair of images"):
        check_preconditions(config, data)
    config.method = "ce"  # no selection: nothing to refuse
    check_preconditions(config, data)
    config.stage1.propagation = "none"
    check_preconditions(config, data)


def test_propagation_input_labels_spreads_the_noisy_labels_not_the_network(stage1_run):
    config, data, workdir, probabilities = stage1_run
    config = confidence_config(config, propagation="pixels", propagation_input="labels")
    stats = select_labels(config, data, workdir)
    spread = propagate_split(config, data, data.train, one_hot_labels(data.train.labels, data.num_classes))
    expected = select_confident_labels(spread, data.train.labels, float(config.stage1.threshold),
                                       float(config.stage1.floor_fraction), top_up=config.stage1.top_up)
    np.testing.assert_array_equal(load_selection(workdir, data), expected)
    assert (stats["propagation"], stats["propagation_input"]) == ("pixels", "labels")
    config.stage1.propagation_input = "posterior"  # the network's posterior spread instead: another selection
    select_labels(config, data, workdir)
    assert not np.array_equal(expected, load_selection(workdir, data))


def test_one_hot_labels_refuses_a_label_outside_the_classes():
    np.testing.assert_array_equal(one_hot_labels([0, 2], 3), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got 0..3"):
        one_hot_labels([0, 3], 3)
