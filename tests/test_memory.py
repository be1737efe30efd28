"""release_memory gives the freed holes of the heap back to the OS, and the prediction loops run traced."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In a fresh process: 4,000 blocks of 64 KB freed between small live ones (as a stage's buffers freed between
# longer-lived objects) stay resident until release_memory.
HOLES = """
from tf_twostage.utils.memory import release_memory

def rss():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) * 1024

base = rss()
keep, drop = [], []
for _ in range(4000):
    drop.append(bytearray(64 * 1024))
    keep.append(bytearray(100))
del drop
freed = rss() - base
released = release_memory()
print(released, freed, rss() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, glibc's malloc_trim")
def test_release_memory_returns_the_freed_heap_to_the_os():
    output = subprocess.run([sys.executable, "-c", HOLES], cwd=ROOT, capture_output=True, text=True, check=True)
    released, freed, after = output.stdout.split()
    if released != "True":
        pytest.skip("no glibc malloc_trim here")
    assert int(freed) > 64 * 2**20  # the holes were still resident
    assert int(after) < 16 * 2**20


def test_inference_function_is_traced_once_per_model_and_matches_the_eager_call():
    import keras
    import numpy as np

    from tf_twostage.models.inference import inference_function

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    predict = inference_function(model)
    assert inference_function(model) is predict
    for rows in (4, 5, 7):  # a last, smaller batch does not trace again after the shapes generalize
        images = np.random.default_rng(rows).random((rows, 3), np.float32)
        np.testing.assert_allclose(predict(images), model(images, training=False), rtol=1e-6)
    assert predict.experimental_get_tracing_count() <= 2
