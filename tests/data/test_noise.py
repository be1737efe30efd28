import numpy as np
import pytest
import tensorflow as tf
from ml_collections import ConfigDict

from tf_twostage.data.noise import (
    NOISE_TYPES,
    add_label_noise,
    apply_noise_config,
    corrupt_labels,
    default_pairs,
    load_matrix_file,
    parse_mapping,
    realized_noise_rate,
    realized_transition_matrix,
    transition_matrix,
)

C = 10
LABELS = np.arange(100_000) % C
INDEX = np.arange(100_000)


def _random_matrix(seed=0):
    raw = np.random.RandomState(seed).rand(C, C) ** 3
    raw[0, 3] = 0.0  # a zero entry must never be drawn
    return raw / raw.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("noise_type", ["symmetric", "uniform", "asymmetric", "none"])
def test_labels_unchanged_at_zero_noise_rate(noise_type):
    matrix = transition_matrix(noise_type, 0.0, C, mapping={2: 7, 3: 8})
    np.testing.assert_array_equal(matrix, np.eye(C))
    np.testing.assert_array_equal(add_label_noise(LABELS[:5000], INDEX[:5000], matrix, seed=1), LABELS[:5000])


def test_symmetric_rate_one_changes_every_label():
    noisy = add_label_noise(LABELS, INDEX, transition_matrix("symmetric", 1.0, C), seed=3)
    assert np.all(noisy != LABELS)


@pytest.mark.parametrize(
    "matrix",
    [
        transition_matrix("symmetric", 0.4, C),
        transition_matrix("uniform", 0.5, C),
        transition_matrix("asymmetric", 0.6, C, mapping={2: 7, 3: 8, 5: 6, 7: 1}),
        _random_matrix(),
    ],
    ids=["symmetric", "uniform", "asymmetric", "full"],
)
def test_empirical_matrix_over_100k_draws_matches_the_target(matrix):
    noisy = add_label_noise(LABELS, INDEX, matrix, seed=11)
    realized = realized_transition_matrix(LABELS, noisy, C)
    np.testing.assert_allclose(realized, matrix, atol=0.015)
    assert np.all(realized[matrix == 0] == 0)


def test_same_seed_same_labels_and_other_seed_other_labels():
    matrix = transition_matrix("symmetric", 0.5, C)
    first = add_label_noise(LABELS[:2000], INDEX[:2000], matrix, seed=5)
    np.testing.assert_array_equal(first, add_label_noise(LABELS[:2000], INDEX[:2000], matrix, seed=5))
    assert np.mean(first != add_label_noise(LABELS[:2000], INDEX[:2000], matrix, seed=6)) > 0.2


def test_eager_equals_per_element_inside_tf_data_and_any_order():
    matrix = _random_matrix(1)
    labels, index = LABELS[:300], INDEX[:300] + 1000
    eager = add_label_noise(labels, index, matrix, seed=9)
    mapped = tf.data.Dataset.from_tensor_slices((labels, index)).map(
        lambda label, i: corrupt_labels(label, i, matrix, 9))
    np.testing.assert_array_equal(np.array(list(mapped.as_numpy_iterator())), eager)
    order = np.random.RandomState(0).permutation(300)
    batched = tf.data.Dataset.from_tensor_slices((labels[order], index[order])).batch(64).map(
        lambda label, i: corrupt_labels(label, i, matrix, 9))
    np.testing.assert_array_equal(np.concatenate(list(batched.as_numpy_iterator())), eager[order])


def test_realized_rate_and_matrix_on_a_hand_made_example():
    clean = np.array([0, 0, 1, 1, 1, 2])
    noisy = np.array([0, 1, 1, 1, 0, 2])
    assert realized_noise_rate(clean, noisy) == pytest.approx(2 / 6)
    expected = np.array([[0.5, 0.5, 0, 0], [1 / 3, 2 / 3, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(realized_transition_matrix(clean, noisy, 4), expected)
    assert realized_noise_rate([], []) == 0.0


def test_symmetric_and_uniform_matrices_have_the_stated_entries():
    symmetric = transition_matrix("symmetric", 0.3, 4)
    assert symmetric[0, 0] == pytest.approx(0.7) and symmetric[0, 1] == pytest.approx(0.1)
    uniform = transition_matrix("uniform", 0.4, 4)
    assert uniform[0, 0] == pytest.approx(0.7) and uniform[0, 1] == pytest.approx(0.1)


def test_paper_pairs_and_mapping_parser():
    assert default_pairs("mnist5k") == {2: 7, 3: 8, 5: 6, 7: 1}
    assert default_pairs("cifar10") == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    assert parse_mapping(" 2->7, 3 -> 8") == {2: 7, 3: 8}
    with pytest.raises(ValueError, match="no default pairs"):
        default_pairs("clothing1m")


def test_matrix_files_load_from_npy_and_csv(tmp_path):
    matrix = _random_matrix(2)
    np.save(tmp_path / "t.npy", matrix)
    np.savetxt(tmp_path / "t.csv", matrix, delimiter=",")
    np.testing.assert_allclose(load_matrix_file(str(tmp_path / "t.npy"), C), matrix)
    np.testing.assert_allclose(load_matrix_file(str(tmp_path / "t.csv"), C), matrix)


def test_config_driven_noise_reports_target_and_realized_values():
    config = ConfigDict({"type": "asymmetric", "rate": 0.6, "mapping": "", "matrix_file": ""})
    noisy, report = apply_noise_config(config, LABELS[:10000], INDEX[:10000], C, "mnist5k", seed=0)
    assert report.realized_rate == pytest.approx(0.24, abs=0.02)
    assert report.to_json()["target_matrix"][2][7] == pytest.approx(0.6)
    assert np.all(noisy[LABELS[:10000] == 0] == 0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: transition_matrix("symmetric", 1.5, C), r"noise.rate must be in \[0, 1\], got 1.5"),
        (lambda: transition_matrix("symmetric", float("nan"), C), r"noise.rate must be in \[0, 1\], got nan"),
        (lambda: transition_matrix("gaussian", 0.1, C), r"noise.type must be one of none, symmetric"),
        (lambda: transition_matrix("symmetric", 0.1, 1), r"number of classes must be an integer >= 2, got 1"),
        (lambda: transition_matrix("asymmetric", 0.1, C, mapping={2: 12}), r"class 12 is outside \[0, 10\)"),
        (lambda: transition_matrix("asymmetric", 0.1, C, mapping={2: 2}), r"maps class 2 onto itself"),
        (lambda: transition_matrix("matrix", 0, 3, matrix=np.eye(4)), r"must be 3 x 3, got shape \(4, 4\)"),
        (lambda: transition_matrix("matrix", 0, 2, matrix=[[0.5, 0.4], [0, 1]]), r"row 0 sums to 0.9"),
        (lambda: transition_matrix("matrix", 0, 2, matrix=[[1.5, -0.5], [0, 1]]), r"non-negative"),
        (lambda: parse_mapping("2=>7"), r"must look like '2->7,3->8', got '2=>7'"),
        (lambda: load_matrix_file("/nonexistent.npy", 3), r"'/nonexistent.npy' does not exist"),
    ],
)
def test_bad_noise_settings_name_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_every_declared_noise_type_builds_a_matrix():
    for noise_type in NOISE_TYPES:
        matrix = transition_matrix(noise_type, 0.2, 4, mapping={0: 1}, matrix=np.eye(4))
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
