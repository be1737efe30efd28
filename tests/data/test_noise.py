import json

import numpy as np
import pytest
import tensorflow as tf
from ml_collections import ConfigDict

from tf_twostage.data import noise
from tf_twostage.data.noise import (
    NOISE_TYPES,
    NoiseReport,
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
MNIST_PAIRS = {2: 7, 3: 8, 5: 6, 7: 1}


def _random_matrix(seed=0, num_classes=C):
    raw = np.random.RandomState(seed).rand(num_classes, num_classes) ** 3
    raw[0, 3] = 0.0  # zero entries must never be drawn: one inside a row ...
    raw[1, -1] = 0.0  # ... and one at the end of a row
    return raw / raw.sum(axis=1, keepdims=True)


def _noise_config(**overrides):
    values = {"type": "symmetric", "rate": 0.0, "mapping": "", "matrix_file": ""}
    values.update(overrides)
    return ConfigDict(values)


@pytest.mark.parametrize("noise_type", ["none", "symmetric", "uniform", "asymmetric"])
def test_labels_unchanged_at_zero_noise_rate(noise_type):
    matrix = transition_matrix(noise_type, 0.0, C, mapping=MNIST_PAIRS)
    np.testing.assert_array_equal(matrix, np.eye(C))
    np.testing.assert_array_equal(add_label_noise(LABELS, INDEX, matrix, seed=1), LABELS)
    noisy, report = apply_noise_config(_noise_config(type=noise_type), LABELS, INDEX, C, "mnist", seed=1)
    np.testing.assert_array_equal(noisy, LABELS)
    assert report.realized_rate == 0.0


def test_identity_matrix_type_leaves_labels_unchanged(tmp_path):
    np.save(tmp_path / "eye.npy", np.eye(C))
    config = _noise_config(type="matrix", matrix_file=str(tmp_path / "eye.npy"))
    noisy, _ = apply_noise_config(config, LABELS, INDEX, C, "cifar10", seed=4)
    np.testing.assert_array_equal(noisy, LABELS)


def test_symmetric_rate_one_changes_every_label():
    noisy = add_label_noise(LABELS, INDEX, transition_matrix("symmetric", 1.0, C), seed=3)
    assert noisy.dtype == np.int64
    assert np.all(noisy != LABELS)


@pytest.mark.parametrize(
    "matrix",
    [
        transition_matrix("symmetric", 0.4, C),
        transition_matrix("uniform", 0.5, C),
        transition_matrix("asymmetric", 0.6, C, mapping=default_pairs("cifar10")),
        _random_matrix(),
    ],
    ids=["symmetric", "uniform", "asymmetric", "full"],
)
def test_empirical_matrix_over_100k_draws_matches_the_target(matrix):
    noisy = add_label_noise(LABELS, INDEX, matrix, seed=11)
    realized = realized_transition_matrix(LABELS, noisy, C)
    np.testing.assert_allclose(realized, matrix, atol=0.012)
    assert np.all(realized[matrix == 0] == 0)


def test_matrices_have_the_stated_entries():
    symmetric = transition_matrix("symmetric", 0.3, 4)
    np.testing.assert_allclose(symmetric[0], [0.7, 0.1, 0.1, 0.1])
    uniform = transition_matrix("uniform", 0.4, 4)
    np.testing.assert_allclose(uniform[0], [0.7, 0.1, 0.1, 0.1])
    cifar = transition_matrix("asymmetric", 0.6, C, mapping=default_pairs("cifar10"))
    assert cifar[3, 5] == cifar[5, 3] == cifar[9, 1] == pytest.approx(0.6)  # cat <-> dog, truck -> automobile
    assert cifar[3, 3] == cifar[5, 5] == pytest.approx(0.4)
    np.testing.assert_array_equal(cifar[1], np.eye(C)[1])  # not a source: untouched
    for noise_type in NOISE_TYPES:
        matrix = transition_matrix(noise_type, 0.2, 4, mapping={0: 1}, matrix=np.eye(4))
        assert matrix.dtype == np.float64 and matrix.shape == (4, 4)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_same_seed_gives_same_labels_and_other_seed_other_labels():
    matrix = transition_matrix("symmetric", 0.5, C)
    first = add_label_noise(LABELS, INDEX, matrix, seed=5)
    np.testing.assert_array_equal(first, add_label_noise(LABELS, INDEX, matrix, seed=5))
    other = add_label_noise(LABELS, INDEX, matrix, seed=6)
    # Independent draws at rate 0.5 over 10 classes disagree on about 1 - (0.25 + 0.5**2 / 9) = 72%.
    assert np.mean(first != other) == pytest.approx(0.72, abs=0.02)


def test_a_draw_depends_only_on_seed_and_example_index():
    matrix = _random_matrix(3)
    whole = add_label_noise(LABELS[:1000], INDEX[:1000], matrix, seed=2)
    np.testing.assert_array_equal(add_label_noise(LABELS[500:1000], INDEX[500:1000], matrix, seed=2), whole[500:])
    scalar = corrupt_labels(tf.constant(LABELS[7]), tf.constant(INDEX[7], tf.int32), matrix, 2)
    assert scalar.shape == () and scalar.dtype == tf.int64 and int(scalar) == whole[7]


def test_eager_equals_per_element_inside_tf_data_and_shuffled_batches():
    matrix = _random_matrix(1)
    labels, index = LABELS[:200], INDEX[:200] + 1000
    eager = add_label_noise(labels, index, matrix, seed=9)

    def corrupt(label, i):
        return corrupt_labels(label, i, matrix, 9)

    per_element = tf.data.Dataset.from_tensor_slices((labels, index)).map(corrupt)
    np.testing.assert_array_equal(np.fromiter(per_element.as_numpy_iterator(), np.int64), eager)
    order = np.random.RandomState(0).permutation(len(labels))
    batched = tf.data.Dataset.from_tensor_slices((labels[order], index[order])).batch(64).map(corrupt)
    np.testing.assert_array_equal(np.concatenate(list(batched.as_numpy_iterator())), eager[order])


def test_inverse_cdf_never_passes_the_last_drawable_class():
    # Rows summing to 1 - 5e-7 (accepted) and rows ending in zero-probability classes.
    matrix = np.array([[0.5, 0.4999995, 0.0], [0.0, 0.0, 1.0], [0.2, 0.0, 0.8]])
    cumulative = tf.constant(noise._cumulative_rows(matrix))
    u = tf.constant([0.0, 0.2, 0.4999999, 0.5, 0.9999996, np.nextafter(1.0, 0.0)], tf.float64)
    draws = [noise._inverse_cdf(cumulative, tf.fill(u.shape, tf.constant(row, tf.int64)), u).numpy()
             for row in range(3)]
    np.testing.assert_array_equal(draws[0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(draws[1], [2, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(draws[2], [0, 2, 2, 2, 2, 2])


def test_uniform_draws_cover_the_unit_interval_evenly():
    u = noise._uniform(3, tf.constant(INDEX, tf.int64)).numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=10, range=(0.0, 1.0))[0]
    np.testing.assert_allclose(counts / len(u), 0.1, atol=0.005)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02  # neighbouring indices are unrelated


def test_realized_rate_and_matrix_on_a_hand_made_example():
    clean = np.array([0, 0, 1, 1, 1, 2])
    noisy = np.array([0, 1, 1, 1, 0, 2])
    assert realized_noise_rate(clean, noisy) == pytest.approx(2 / 6)
    expected = np.array([[0.5, 0.5, 0, 0], [1 / 3, 2 / 3, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(realized_transition_matrix(clean, noisy, 4), expected)  # class 3: zero row
    assert realized_noise_rate([], []) == 0.0
    np.testing.assert_array_equal(realized_transition_matrix([], [], 3), np.zeros((3, 3)))


def test_paper_pairs_and_mapping_parser():
    assert default_pairs("mnist5k") == default_pairs("mnist") == {2: 7, 3: 8, 5: 6, 7: 1}
    assert default_pairs("cifar10") == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    assert parse_mapping(" 2->7, 3 -> 8") == {2: 7, 3: 8}
    assert parse_mapping("3->5,5->3") == {3: 5, 5: 3}


@pytest.mark.parametrize("suffix, delimiter", [("npy", None), ("csv", ","), ("txt", " ")])
def test_matrix_files_load_from_npy_csv_and_txt(tmp_path, suffix, delimiter):
    matrix = _random_matrix(2)
    path = tmp_path / f"t.{suffix}"
    if suffix == "npy":
        np.save(path, matrix)
    else:
        np.savetxt(path, matrix, delimiter=delimiter, fmt="%.17g")
    loaded = load_matrix_file(str(path), C)
    assert loaded.dtype == np.float64
    np.testing.assert_allclose(loaded, matrix, rtol=0, atol=1e-15)


def test_config_driven_noise_reports_target_and_realized_values(tmp_path):
    config = _noise_config(type="asymmetric", rate=0.6)
    noisy, report = apply_noise_config(config, LABELS[:10000], INDEX[:10000], C, "mnist5k", seed=0)
    assert isinstance(report, NoiseReport) and noisy.dtype == np.int64
    assert report.realized_rate == pytest.approx(0.6 * 4 / 10, abs=0.02)
    assert np.all(noisy[LABELS[:10000] == 0] == 0)
    blob = json.loads(json.dumps(report.to_json()))
    assert set(blob) == {"type", "rate", "realized_rate", "target_matrix", "realized_matrix"}
    assert (blob["type"], blob["rate"], blob["target_matrix"][2][7]) == ("asymmetric", 0.6, 0.6)
    assert blob["realized_matrix"][2][7] == pytest.approx(0.6, abs=0.05)

    custom = apply_noise_config(_noise_config(type="asymmetric", rate=1.0, mapping="0->1"),
                                LABELS[:100], INDEX[:100], C, "clothing1m", seed=0)[0]
    np.testing.assert_array_equal(custom, np.where(LABELS[:100] == 0, 1, LABELS[:100]))

    np.savetxt(tmp_path / "flip.csv", np.eye(C)[::-1], delimiter=",")
    flipped = apply_noise_config(_noise_config(type="matrix", matrix_file=str(tmp_path / "flip.csv")),
                                 LABELS[:100], INDEX[:100], C, "cifar10", seed=0)[0]
    np.testing.assert_array_equal(flipped, C - 1 - LABELS[:100])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: transition_matrix("symmetric", 1.5, C), r"noise.rate must be in \[0, 1\], got 1.5"),
        (lambda: transition_matrix("symmetric", -0.1, C), r"noise.rate must be in \[0, 1\], got -0.1"),
        (lambda: transition_matrix("symmetric", float("nan"), C), r"noise.rate must be in \[0, 1\], got nan"),
        (lambda: transition_matrix("uniform", "0.3", C), r"noise.rate must be in \[0, 1\], got '0.3'"),
        (lambda: transition_matrix("gaussian", 0.1, C), r"noise.type must be one of none, symmetric, .*'gaussian'"),
        (lambda: transition_matrix("symmetric", 0.1, 1), r"number of classes must be an integer >= 2, got 1"),
        (lambda: transition_matrix("asymmetric", 0.1, C, mapping={2: 12}), r"class 12 is outside \[0, 10\)"),
        (lambda: transition_matrix("asymmetric", 0.1, C, mapping={-1: 2}), r"class -1 is outside \[0, 10\)"),
        (lambda: transition_matrix("asymmetric", 0.1, C, mapping={2: 2}), r"maps class 2 onto itself"),
        (lambda: transition_matrix("asymmetric", 0.1, C), r"needs class pairs"),
        (lambda: transition_matrix("matrix", 0, 3), r"needs a transition matrix"),
        (lambda: transition_matrix("matrix", 0, 3, matrix=np.eye(4)), r"must be 3 x 3, got shape \(4, 4\)"),
        (lambda: transition_matrix("matrix", 0, 2, matrix=[[0.5, 0.4], [0, 1]]), r"row 0 sums to 0.9\b"),
        (lambda: transition_matrix("matrix", 0, 2, matrix=[[1.5, -0.5], [0, 1]]), r"\[0, 1\] is -0.5"),
        (lambda: parse_mapping("2=>7"), r"must look like '2->7,3->8', got '2=>7'"),
        (lambda: parse_mapping("2->7,3->8,2->9"), r"source class 2 twice in '2->7,3->8,2->9'"),
        (lambda: default_pairs("clothing1m"), r"'clothing1m' has no default pairs.*noise.mapping"),
        (lambda: load_matrix_file("/nonexistent.npy", 3), r"'/nonexistent.npy' does not exist"),
        (lambda: load_matrix_file("/tmp/t.json", 3), r"must end in .npy, .csv or .txt, got '/tmp/t.json'"),
        (lambda: add_label_noise([0, 5], [0, 1], np.eye(3), 0), r"labels must be in \[0, 3\), got 5"),
        (lambda: add_label_noise([0, 1], [0], np.eye(3), 0), r"same shape, got \(2,\) and \(1,\)"),
        (lambda: apply_noise_config(_noise_config(type="matrix"), [0], [0], 3, "mnist", 0), r"noise.matrix_file"),
        (lambda: apply_noise_config(_noise_config(type="asymmetric", rate=0.2, mapping="1-2"), [0], [0], 3, "mnist",
                                    0), r"got '1-2'"),
    ],
)
def test_bad_noise_settings_raise_value_errors_naming_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_matrix_files_are_named_in_the_error(tmp_path):
    (tmp_path / "words.csv").write_text("a,b\nc,d\n")
    with pytest.raises(ValueError, match=r"words.csv' is not a readable matrix"):
        load_matrix_file(str(tmp_path / "words.csv"), 2)
    np.save(tmp_path / "unnormalized.npy", np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"unnormalized.npy'.*row 0 sums to 2"):
        load_matrix_file(str(tmp_path / "unnormalized.npy"), 2)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects.npy' is not a readable matrix"):
        load_matrix_file(str(tmp_path / "objects.npy"), 2)


def test_instance_dependent_noise_flips_to_the_most_similar_class_deterministically():
    from tf_twostage.data.noise import instance_dependent_noise

    rng = np.random.RandomState(0)
    labels = np.arange(2000) % 4
    probabilities = rng.dirichlet(np.ones(4), size=2000)
    noisy, flip = instance_dependent_noise(labels, np.arange(2000), probabilities, 0.3, seed=7)
    again, _ = instance_dependent_noise(labels[::-1], np.arange(2000)[::-1], probabilities[::-1], 0.3, seed=7)
    np.testing.assert_array_equal(noisy, again[::-1])  # keyed on (seed, index), not on order
    changed = noisy != labels
    others = probabilities.copy()
    others[np.arange(2000), labels] = -1
    np.testing.assert_array_equal(noisy[changed], others.argmax(axis=1)[changed])
    assert abs(changed.mean() - flip.mean()) < 0.03 and 0.25 < flip.mean() <= 0.3
    doubt = 1 - probabilities[np.arange(2000), labels]
    assert flip[np.argmax(doubt)] >= flip[np.argmin(doubt)]  # the more ambiguous image flips more often
    different, _ = instance_dependent_noise(labels, np.arange(2000), probabilities, 0.3, seed=8)
    assert not np.array_equal(noisy, different)


def test_instance_dependent_noise_edges_and_bad_input():
    from tf_twostage.data.noise import instance_dependent_noise

    labels, probabilities = np.array([0, 1, 2]), np.eye(3)[[1, 2, 0]]
    unchanged, _ = instance_dependent_noise(labels, np.arange(3), probabilities, 0.0, seed=0)
    np.testing.assert_array_equal(unchanged, labels)  # rate 0 is the identity
    everything, _ = instance_dependent_noise(labels, np.arange(3), probabilities, 1.0, seed=0)
    np.testing.assert_array_equal(everything, [1, 2, 0])  # rate 1 changes every label, to the most similar
    with pytest.raises(ValueError, match=r"noise.rate must be in \[0, 1\], got 1.5"):
        instance_dependent_noise(labels, np.arange(3), probabilities, 1.5, seed=0)
    with pytest.raises(ValueError, match="probabilities must be"):
        instance_dependent_noise(labels, np.arange(3), probabilities[:, :1], 0.2, seed=0)
