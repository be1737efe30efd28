"""A classifier's inference pass as one traced graph, for prediction loops over many batches."""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf

_TRACED = weakref.WeakKeyDictionary()


def inference_function(model: keras.Model):
    """`model(images, training=False)` as a `tf.function` (traced once per model, shapes generalized).

    Calling a large network eagerly batch by batch keeps every intermediate buffer of the pass alive at
    once: ResNet-50 on 128 images of 224x224 peaked at 19.5 GB resident in eager mode and at 2.2 GB traced
    (and ran 3x slower), which made the Clothing1M preset's Stage-1 predictions run out of memory. Cached
    per model, weakly: the function holds a weak reference, so the model can still be freed, and the caller
    keeps the model alive while it uses the function.
    """
    traced = _TRACED.get(model)
    if traced is None:
        reference = weakref.ref(model)
        traced = tf.function(lambda images: reference()(images, training=False), reduce_retracing=True)
        _TRACED[model] = traced
    return traced
