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
        if "image_2" not in batch:
            raise ValueError(
                f"PiModel needs two views per batch, `image` and `image_2`; this batch has only "
                f"{', '.join(sorted(batch))}. Build the stream with semi_supervised_stream(..., num_views=2)")
        return self.classifier(batch["image_2"], training=True)
