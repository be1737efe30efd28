"""The Pi model: the consistency target is a second stochastic pass over the same images."""

from __future__ import annotations

from tf_twostage.stage2.trainer import SemiSupervisedTrainer


class PiModel(SemiSupervisedTrainer):
    """Two passes per step: `image` and `image_2` (another augmentation of the same images; the stream
    gives it with `num_views=2`), each with its own Gaussian noise and dropout.

    `stop_gradient_targets=True` (the cheaper variant) treats the second pass as a constant target;
    False lets the gradient flow through both branches, as in Laine & Aila.
    """

    def __init__(self, classifier, stop_gradient_targets: bool = False, **kwargs):
        super().__init__(classifier, stop_gradient_targets=stop_gradient_targets, **kwargs)

    def consistency_targets(self, batch, predictions):
        second_view = batch.get("image_2", batch["image"])
        return self.classifier(second_view, training=True)
