"""The synthetic Clothing1M release tree: layout the loader reads, determinism, repeats, noise, bad specs."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_twostage.data.clothing1m import CLASS_NAMES, load_clothing1m
from tf_twostage.data.release_tree import ReleaseTreeSpec, file_key, release_lists, write_release_tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = ReleaseTreeSpec(num_files=40, num_train=100, num_clean_train=8, num_val=5, num_test=6, image_size=(32, 40),
                       seed=3)


@pytest.fixture(name="tree", scope="module")
def fixture_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    summary = write_release_tree(str(root), SPEC)
    return root, summary


def _digest(root) -> str:
    digest = hashlib.sha256()
    for folder, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as file:
                digest.update(file.read())
    return digest.hexdigest()


def test_the_loader_reads_the_generated_tree_with_repeated_entries(tree):
    root, summary = tree
    splits = load_clothing1m(str(root), image_size=(28, 28))

    assert splits.class_names == CLASS_NAMES
    assert (len(splits.train), len(splits.clean), len(splits.validation), len(splits.test)) == (100, 8, 5, 6)
    assert summary["distinct_train_files"] == 40 - 5 - 6 < 100  # entries repeat files
    assert len(set(splits.train.paths)) == summary["distinct_train_files"]
    clean_in_train = set(splits.train.paths) & set(splits.clean.paths)
    assert len(clean_in_train) == 8  # as in the release, clean-training images also carry a noisy label
    assert not set(splits.test.paths) & (set(splits.train.paths) | set(splits.validation.paths))
    image = next(iter(splits.train.to_dataset()))["image"].numpy()
    assert image.shape == (28, 28, 3) and image.std() > 5  # textured, not blank
    assert summary["images_written"] == 40 and summary["mean_file_bytes"] > 500


def test_noisy_labels_move_to_neighbouring_classes_at_about_the_rate():
    spec = ReleaseTreeSpec(num_files=20_000, num_train=19_000, num_val=10, num_test=10, noise_rate=0.3)
    lists = release_lists(spec)
    noisy = lists.noisy_labels >= 0
    true, given = lists.true_classes[noisy], lists.noisy_labels[noisy]
    moved = true != given

    assert abs(moved.mean() - 0.3) < 0.02
    assert np.all(((given[moved] - true[moved]) % 14 == 1) | ((given[moved] - true[moved]) % 14 == 13))
    assert set(np.unique(lists.true_classes)) == set(range(14))


def test_the_tree_is_a_function_of_the_spec(tree, tmp_path):
    root, _ = tree
    write_release_tree(str(tmp_path / "again"), SPEC)
    write_release_tree(str(tmp_path / "other"), ReleaseTreeSpec(**{**SPEC.__dict__, "seed": 4}))

    assert _digest(tmp_path / "again") == _digest(root)
    assert _digest(tmp_path / "other") != _digest(root)


def test_keeping_existing_images_rewrites_only_the_lists(tree, tmp_path):
    root, _ = tree
    copy = tmp_path / "copy"
    write_release_tree(str(copy), SPEC)
    marker = copy / file_key(0)
    marker.write_bytes(marker.read_bytes())  # same bytes, so the digest only changes if lists differ
    bigger = ReleaseTreeSpec(**{**SPEC.__dict__, "num_train": 300})

    summary = write_release_tree(str(copy), bigger, keep_existing_images=True)

    assert summary["images_written"] == 0
    assert len(load_clothing1m(str(copy), image_size=(28, 28)).train) == 300


@pytest.mark.parametrize("changes,message", [
    ({"num_files": 10}, "num_files must exceed num_test \\+ num_val \\(11\\)"),
    ({"num_train": 0}, "num_train must be an integer >= 1, got 0"),
    ({"noise_rate": 1.5}, "noise_rate must be in \\[0, 1\\], got 1.5"),
    ({"image_size": (16, 16)}, "image_size must be two integers >= 28"),
    ({"quality": 101}, "quality must be in \\[1, 100\\], got 101"),
])
def test_bad_specs_name_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        ReleaseTreeSpec(**{**SPEC.__dict__, **changes})


def test_the_program_writes_a_tree_and_refuses_a_bad_value(tmp_path):
    program = os.path.join(ROOT, "benchmarks", "make_release_tree.py")
    env = dict(os.environ, PYTHONPATH=ROOT)
    args = ["--num_files=20", "--num_train=30", "--num_clean_train=2", "--num_val=2", "--num_test=2",
            "--image_size=28,28"]
    done = subprocess.run([sys.executable, program, f"--out_dir={tmp_path / 'tree'}", *args],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert '"images_written": 20' in done.stdout
    assert len(load_clothing1m(str(tmp_path / "tree"), image_size=(28, 28)).train) == 30

    bad = subprocess.run([sys.executable, program, f"--out_dir={tmp_path / 'bad'}", "--noise_rate=2"],
                         capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 2 and "noise_rate must be in [0, 1], got 2.0" in bad.stderr
    assert not (tmp_path / "bad").exists()
