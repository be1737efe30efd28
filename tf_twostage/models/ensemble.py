"""An average of classifiers: one `keras.Model` whose output is the mean of its members' probabilities.

Stage 2 can train several networks from different seeds (`stage2.ensemble_size`): each is a classifier of
the same architecture, and the run's classifier is their average, a plain functional model that trains,
saves its weights (one file, the members in order), exports and serves like a single network. Members are
renamed `member_0`, `member_1`, ...: Keras wants the layers of a model uniquely named, and every member of
an architecture has the same name. The renamed model shares the member's layers, so its weights are the
member's own.
"""

from __future__ import annotations

from typing import Sequence

import keras

MAX_MEMBERS = 16


def average_ensemble(members: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """A model mapping images to the mean of `members`' outputs (one member: that member, unchanged)."""
    members = list(members)
    if not members:
        raise ValueError("an ensemble needs at least one member; got none")
    if len(members) == 1:
        return members[0]
    shapes = {tuple(member.input.shape[1:]) for member in members}
    if len(shapes) != 1:
        raise ValueError(f"the members of an ensemble take images of one shape; got {sorted(shapes)}")
    renamed = [keras.Model(member.input, member.output, name=f"member_{k}") for k, member in enumerate(members)]
    images = keras.Input(shape=members[0].input.shape[1:], name="image")
    average = keras.layers.Average(name="average", dtype="float32")([member(images) for member in renamed])
    return keras.Model(images, average, name=name)


def ensemble_members(model: keras.Model) -> list:
    """The networks `average_ensemble` averaged (`[model]` for a single network)."""
    members = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.startswith("member_")]
    return members or [model]
