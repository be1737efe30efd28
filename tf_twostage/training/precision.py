"""How a run computes: the Keras dtype policy (mixed precision) and XLA, from `config.train`.

* `train.dtype_policy`: `float32`, `mixed_float16` or `mixed_bfloat16`. Under a mixed policy the
  layers compute in 16 bits and keep float32 variables; the classifiers end in a float32 softmax
  (tf_twostage.models), so probabilities, losses and the temporal-ensemble buffer stay float32.
  Under `mixed_float16` `compile` wraps the optimizer in a `keras.optimizers.LossScaleOptimizer`
  (Keras' `auto_scale_loss`), whose `scale_loss` the one base `train_step` calls: without it small
  gradients underflow to zero in float16 (tests/training/test_precision.py shows it). bfloat16 has
  float32's exponent range and needs no scaling.
* `train.micro_batches`: the package's trainers differentiate each batch in this many slices and apply
  one update (`ClassifierTrainer.compile(micro_batches=...)`; plain Keras models, as the clean-set
  fine-tuning: batches of batch_size / k and the optimizer's `gradient_accumulation_steps`).
* `train.jit_compile`: `compile`'s `jit_compile` (a bool; False by default: XLA was slower on the
  2-core CPU measured (ResNet-14), and a fixed value keeps a run the same on every machine).
"""

from __future__ import annotations

import contextlib

import keras

DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def set_dtype_policy(name: str) -> None:
    """Sets Keras' global dtype policy for the models built after it (one run per process)."""
    if name not in DTYPE_POLICIES:
        raise ValueError(f"train.dtype_policy must be one of {', '.join(DTYPE_POLICIES)}; got {name!r}")
    keras.config.set_dtype_policy(name)


@contextlib.contextmanager
def dtype_policy(name: str):
    """`set_dtype_policy(name)` for the body of a `with`, the previous policy restored after it."""
    previous = keras.config.dtype_policy()
    set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compile_options(train_config) -> dict:
    """The `compile` keywords of `config.train` for any Keras model (XLA)."""
    if not isinstance(train_config.jit_compile, bool):
        raise ValueError(f"train.jit_compile must be true or false; got {train_config.jit_compile!r}")
    return {"jit_compile": train_config.jit_compile}


def trainer_options(train_config) -> dict:
    """The `compile` keywords of `config.train` for the package's trainers (XLA, micro-batches)."""
    return {**compile_options(train_config), "micro_batches": int(train_config.micro_batches)}
