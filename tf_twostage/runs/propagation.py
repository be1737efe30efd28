"""`stage1.propagation`: the ranking posterior propagated over the images' own neighbour graph.

`tf_twostage.stage1.propagation` does the arithmetic on arrays; this module gives it the images of a split
as pixel vectors (pre-processed as for evaluation, area-resized to at most `FEATURE_SIDE` pixels a side, blurred
by `stage1.propagation_blur`) and checks the data size before any training (`check_propagation_size`).

The blur (a Gaussian of sigma 1 pixel by default) lets a stroke one pixel off still overlap its look-alike's:
on mnist5k at symmetric 0.8 Stage 1's noisy labels propagated over it keep 15% at 93.7% precision against 91.7%
over the raw pixels (seeds 0-4, chosen on them; sigma 0.5: 92.4%, 1.5: 92.0%, 2: 88.5%; README "The heavy-noise
switch").
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import tensorflow as tf

from tf_twostage.config.base import eval_batch_size
from tf_twostage.data.pipelines import evaluation_dataset
from tf_twostage.data.prepare import PreparedData
from tf_twostage.data.source import ImageSplit
from tf_twostage.stage1.propagation import MAX_EXAMPLES, propagated_posterior

# Images are compared at this side at most: enough for a digit's or an object's shape, cheap for photos.
FEATURE_SIDE = 32


def check_propagation_size(config, data: PreparedData) -> None:
    """Raises ValueError before any training when `stage1.propagation`, or the heavy-noise switch that may
    turn it on (`stage1.heavy_noise_rate`), cannot run on data this large."""
    count = max(len(data.train), len(data.validation))
    if count <= MAX_EXAMPLES:
        return
    if config.stage1.propagation != "none":
        raise ValueError(
            f"stage1.propagation={config.stage1.propagation} compares every pair of images and allows at most "
            f"{MAX_EXAMPLES:,} per split; this run's largest split has {count:,}: set stage1.propagation=none")
    if float(config.stage1.heavy_noise_rate) > 0:
        raise ValueError(
            f"stage1.heavy_noise_rate={config.stage1.heavy_noise_rate:g} may switch on stage1.propagation=pixels, "
            f"which compares every pair of images and allows at most {MAX_EXAMPLES:,} per split; this run's "
            f"largest split has {count:,}: set stage1.heavy_noise_rate=0")


def pixel_features(split: ImageSplit, preprocessor, batch_size: int, blur: float = 0.0) -> np.ndarray:
    """The images of `split` in order, pre-processed, at most FEATURE_SIDE a side, blurred by a Gaussian of
    sigma `blur` pixels over height and width (0: not blurred), one flat row each."""
    rows = []
    for batch in evaluation_dataset(split, preprocessor, batch_size):
        images = tf.convert_to_tensor(batch["image"], tf.float32)
        if images.shape.rank == 3:
            images = images[..., None]
        height, width = int(images.shape[1]), int(images.shape[2])
        if max(height, width) > FEATURE_SIDE:
            factor = FEATURE_SIDE / max(height, width)
            size = (max(1, round(height * factor)), max(1, round(width * factor)))
            images = tf.image.resize(images, size, method="area")
        images = images.numpy()
        if blur > 0:
            images = scipy.ndimage.gaussian_filter(images, sigma=(0, blur, blur, 0))
        rows.append(images.reshape(len(images), -1))
    return np.concatenate(rows) if rows else np.zeros((0, 1), np.float32)


def propagate_split(config, data: PreparedData, split: ImageSplit, probabilities) -> np.ndarray:
    """`probabilities` (over `split`, in order) as `stage1.propagation` says to rank with them."""
    if config.stage1.propagation == "none" or len(split) == 0:
        return np.asarray(probabilities)
    features = pixel_features(split, data.preprocessor, eval_batch_size(config), float(config.stage1.propagation_blur))
    return propagated_posterior(probabilities, features, int(config.stage1.propagation_neighbours),
                                float(config.stage1.propagation_alpha)).astype(np.float32)
