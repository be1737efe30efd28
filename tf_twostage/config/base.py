"""The default experiment configuration, shared by every preset under `configs/`.

Presets start from `base_config()` and change only what differs. The returned ConfigDict is locked:
`--config.KEY=VALUE` overrides of unknown keys, and code that sets a key that does not exist, fail.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """Every key the runner reads, with the MNIST-5k defaults (the paper's MNIST recipe)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.method = "ce"  # see tf_twostage.runs.experiment.METHODS
    config.batch_size = 128  # global batch size (split across replicas under a strategy)
    config.verbose = 1  # 0 silent; 1 a progress bar on a terminal, one line per epoch in a log; 2 one line per epoch

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist5k"
    config.data.dir = ""  # tfds data_dir, Clothing1M root, or the root of a user's folder / CSV data
    config.data.download = False  # tfds datasets: allow a download (needs network)
    config.data.val_fraction = 0.1  # of the noisy training set, held out stratified
    config.data.subtract_mean = False  # per-pixel mean of the training set
    config.data.image_size = (224, 224)  # on-disk datasets: the size the model takes
    # On-disk datasets: () decode and resize straight to image_size | (H, W) resize to this, then crop to
    # image_size: a random crop per image in training, the center crop in evaluation and in the export.
    config.data.resize_size = ()
    config.data.channels = 3
    config.data.train = ""  # folder / csv: training source (noisy labels)
    config.data.test = ""  # folder / csv: test source (clean labels)
    config.data.clean = ""  # folder / csv: optional clean subset
    config.data.class_names = ()  # folder / csv: optional explicit class order
    config.data.on_bad_file = "error"  # missing or unreadable image files: error | skip

    config.noise = ml_collections.ConfigDict()
    config.noise.type = "asymmetric"  # none | symmetric | uniform | asymmetric | matrix
    config.noise.rate = 0.6
    config.noise.mapping = ""  # asymmetric pairs "2->7,3->8"; empty = the paper's pairs
    config.noise.matrix_file = ""  # type=matrix: a C x C .npy or .csv transition matrix

    config.augment = ml_collections.ConfigDict()
    config.augment.flip = False
    config.augment.translate_px = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "mlp"  # mlp | resnet14 | resnet50
    config.model.hidden_units = (128, 128)  # mlp only
    config.model.dropout = 0.5  # mlp: after each hidden layer; resnet: between the convs of a unit
    config.model.input_noise = 0.0  # mlp: GaussianNoise stddev on the input
    config.model.top_noise = 0.0  # resnet: GaussianNoise stddev above the pooling
    config.model.weight_decay = 0.0  # resnet14: L2 on the kernels
    # resnet50 initialization: "" random | "imagenet" (keras.applications downloads the ImageNet weights once,
    # needs network, cached in ~/.keras/models) | the path of a local weights file (no network).
    config.model.weights_path = ""
    # Inside the model, before the backbone: none | imagenet (keras.applications.resnet50.preprocess_input on
    # the pipeline's [0, 1] pixels: x 255, RGB -> BGR, minus the ImageNet channel means; for ImageNet weights).
    # Being part of the classifier, it is applied in training, evaluation and the exported SavedModel alike.
    config.model.input_preprocessing = "none"

    config.stage1 = ml_collections.ConfigDict()  # noisy pre-training (also the `ce` baseline)
    config.stage1.epochs = 40
    config.stage1.target_steps = 0  # > 0: epochs scaled to the data, ~this many steps (10..epochs epochs)
    config.stage1.optimizer = "adagrad"  # adagrad | sgd | adam
    config.stage1.learning_rate = 0.1
    config.stage1.momentum = 0.9  # sgd only
    config.stage1.lr_patience = 10  # epochs without val-accuracy gain before halving the lr
    config.stage1.lr_factor = 0.5
    config.stage1.min_lr = 1e-7
    config.stage1.balance_classes = False
    # The loss of Stage 1's pre-training (not of the `ce` baseline): cross_entropy (the paper) | gce
    # (generalized cross-entropy, (1 - p^q) / q: it memorizes wrong labels later, so under heavy symmetric
    # noise the network ranks the labels better; tf_twostage.baselines.losses, README "Harder settings").
    config.stage1.loss = "cross_entropy"
    config.stage1.gce_q = 0.7  # loss=gce: q in (0, 1]; Zhang & Sabuncu's value
    # Selection (docs/protocol.md section 3).
    # best (the best noisy-validation epoch's weights) | average (the mean prediction of the last k epochs, on the
    # training and validation sets; Stage 2 then continues from the last epoch) | kfold (out-of-sample)
    config.stage1.ranking = "best"
    config.stage1.average_last = 5  # ranking=average: epochs averaged
    config.stage1.kfold = 5  # ranking=kfold: folds of out-of-sample predictions
    # auto (clean_set when a clean subset exists) | confidence | clean_set | small_loss | confident_or_small_loss
    config.stage1.rule = "auto"
    config.stage1.threshold = 0.9  # confidence rule: keep P(c|x) >= threshold ...
    config.stage1.floor_fraction = 0.1  # ... topped up to this fraction of each class (the paper: 10%)
    config.stage1.top_up = "class"  # the floor ranks the whole class (paper) | only agreeing predictions
    # Which P(c|x) the confidence rule reads: the pre-trained model's (noisy) | the clean-class posterior
    # corrected by the transition matrix estimated from that model (anchor points, baselines.filter_percentile).
    config.stage1.posterior = "noisy"
    # Which transition matrix `posterior=corrected` inverts: anchors (Patrini et al.) | clusters (cluster
    # means of the posteriors, no anchors needed: tf_twostage.stage1.clusters).
    config.stage1.transition = "anchors"
    # Rank with that posterior propagated over the images' own k-nearest-neighbour graph (pixels, cosine): a
    # view the pre-training could not bend towards the noisy labels (tf_twostage.stage1.propagation; Zhou et
    # al. 2004). none | pixels. Also ranks the second round's labels (stage2.rounds=2). At most 50,000 images.
    config.stage1.propagation = "none"
    config.stage1.propagation_neighbours = 10  # k of the graph
    config.stage1.propagation_alpha = 0.9  # how far labels spread: F = (I - alpha S)^-1 P, alpha in [0, 1)
    # The graph compares the images blurred (Gaussian, this sigma in pixels of the compared images, at most 32 a
    # side, at most 8): a stroke one pixel off still overlaps. 0: the raw pixels (before 2026-11-30).
    config.stage1.propagation_blur = 1.0
    # What Stage 1 spreads: posterior (P, the pre-trained network's) | labels (the noisy labels themselves, one-hot:
    # a vote of each image's look-alikes that no training moves). The second round always spreads its model's.
    config.stage1.propagation_input = "posterior"
    # > 0: when the noise rate implied by the transition matrix estimated from the pre-trained posteriors
    # (cluster estimate) is above this, select for heavy noise instead: posterior=noisy, propagation=pixels,
    # floor 3/4 of the labels estimated right, to 5% (tf_twostage.runs.heavy_noise). 0: never.
    config.stage1.heavy_noise_rate = 0.0
    # Under that switch Stage 1 spreads over the graph this far (propagation_alpha's meaning) ...
    config.stage1.heavy_noise_alpha = 0.99
    # ... this (propagation_input's meaning): the noisy labels, a vote of each image's look-alikes that float
    # rounding in the pre-training cannot move. The second round keeps propagation_alpha and spreads its model's
    # posterior (tf_twostage.runs.heavy_noise).
    config.stage1.heavy_noise_input = "labels"
    # rule=small_loss / confident_or_small_loss: keep a label when its probability of belonging to its class's
    # small-loss component (two-Gaussian mixture on -log P(label|x), tf_twostage.stage1.small_loss) is >= this.
    config.stage1.small_loss_probability = 0.5
    config.stage1.clean_threshold = 0.5  # clean-set rule: one-vs-rest score needed to keep a label
    config.stage1.clean_epochs = 20  # clean-set rule: epochs of the one-vs-rest heads
    # clean-set rule: their batch size. Small, so a clean subset of a few hundred images still gets some
    # hundred steps (at 256, 200 images gave 20 steps: heads that kept no label of 2-3 of 10 classes).
    config.stage1.clean_batch_size = 32

    # Semi-supervised stage (docs/protocol.md section 4; defaults from the temporal-ensembling code).
    config.stage2 = ml_collections.ConfigDict()
    config.stage2.algorithm = "pi"  # pi | temporal_ensembling
    config.stage2.epochs = 300  # an epoch = one pass over the unlabeled half (all training images)
    config.stage2.target_steps = 0  # > 0: epochs (and ramps, in proportion) scaled to ~this many steps
    config.stage2.init_from_stage1 = True  # continue from the Stage-1 weights (else a fresh network)
    # Under the heavy-noise switch (stage1.heavy_noise_rate) Stage 2 starts from a fresh network unless this is
    # True: the pre-trained weights fitted mostly wrong labels, and their float rounding carried into Stage 2
    # (tf_twostage.runs.heavy_noise).
    config.stage2.heavy_noise_init_from_stage1 = False
    # The last Stage-2 round trains this many networks, network k from seed + k (network 0 is the one a single
    # run trains), and the run's classifier averages their probabilities (tf_twostage.models.ensemble): each
    # network costs a Stage 2. Under the heavy-noise switch at least heavy_noise_ensemble_size: on 15% of the
    # labels one network's accuracy moved by up to 1.9 points with its seed alone (tf_twostage.runs.heavy_noise).
    config.stage2.ensemble_size = 1
    config.stage2.heavy_noise_ensemble_size = 3
    config.stage2.batch_size = 100  # global: half labeled (class-balanced), half unlabeled
    config.stage2.learning_rate = 0.003  # Adam, max of the ramped learning rate
    config.stage2.rampup_epochs = 80  # exp(-5 (1-t)^2) on the learning rate and consistency weight
    config.stage2.rampdown_epochs = 50  # exp(-12.5 t^2) on the learning rate; Adam beta1 0.9 -> 0.5
    config.stage2.max_weight_pi = 100.0  # w_max of the Pi model ...
    config.stage2.max_weight_te = 30.0  # ... and of temporal ensembling
    config.stage2.scale_weight_by_labeled_fraction = True  # w_max x kept labels / training images
    config.stage2.fixed_weight = 0.0  # > 0: a fixed alpha instead of the ramp (Clothing1M: 100)
    config.stage2.ensemble_momentum = 0.6  # temporal ensembling's a
    config.stage2.stop_gradient = False  # Pi: no gradient through the second pass (cheaper)
    config.stage2.input_noise = 0.15  # mlp: GaussianNoise on the input of the semi-supervised model
    config.stage2.top_noise = 0.0  # resnet: GaussianNoise above the pooling
    # Dropout of the semi-supervised model alone (None: model.dropout, as in Stage 1); where it sits is the
    # model's (mlp: after each hidden layer; resnet14: between the convolutions of each residual unit).
    config.stage2.dropout = placeholder_float()
    # > 0: Stage 2 ends with the exponential moving average of its weights at this momentum (Keras' optimizer
    # `use_ema`; 0.999 averages over about the last 1,000 steps), not the last step's weights. 0: the last step's.
    config.stage2.weight_ema = 0.0
    # How the consistency term is normalized: classes (squared difference averaged over batch and classes, as
    # Laine & Aila's code, to which max_weight_pi/te refer) | paper (summed over classes, averaged over the
    # batch: the paper's Eq. 2, to which its alpha = 100 refers; the weight is multiplied by the class count).
    config.stage2.consistency_normalization = "classes"
    # What `epochs` counts: all (an epoch = one pass over the unlabeled half, i.e. all training images) |
    # labeled (a sub-epoch = one pass over the labeled half, i.e. the kept labels; the paper's Clothing1M).
    config.stage2.epoch_unit = "all"
    # > 0: halve (lr_factor) the learning rate when validation accuracy has not improved for this many
    # (sub-)epochs, down to min_lr; needs a constant learning rate (rampup_epochs = rampdown_epochs = 0).
    config.stage2.lr_patience = 0
    config.stage2.lr_factor = 0.5
    config.stage2.min_lr = 1e-7
    config.stage2.early_stopping_patience = 0  # > 0: stop after this many (sub-)epochs without improvement
    config.stage2.translate_px = 2  # +-px random translation of both passes
    config.stage2.finetune_epochs = 0  # > 0: fine-tune on the clean subset afterwards (Table 4: rows 7, 8 -> 12, 13)
    # 2: a second selection round (not in the paper; tf_twostage.runs.reselection): after Stage 2, keep the
    # labels the Stage-2 model predicts with P(label|x) >= reselect_threshold, then run Stage 2 again from
    # the Stage-1 weights on those labels. 1: the paper's single round. Like every stage2 key, only
    # method=two_stage reads it (the mnist5k preset sets 2, and its `ce` baseline has no Stage 2 to repeat).
    config.stage2.rounds = 1
    config.stage2.reselect_threshold = 0.7
    # Which labels the second round keeps (tf_twostage.stage1.selection.reselect_labels_second_round):
    # threshold (the Stage-2 model predicts the label with P >= reselect_threshold) | at_least_first (then
    # the labels it predicts most confidently, per class, up to as many as Stage 1 kept in the class).
    config.stage2.reselect_keep = "threshold"
    config.stage2.finetune_learning_rate = 1e-5

    # What scores a run while it trains (tf_twostage.runs.validation): auto (the clean subset when the data
    # has one, else the noisy validation split) | noisy | clean | refined (Stage 1's refined validation set,
    # the paper's improved baseline: it overstates accuracy). Its accuracy is the `val_accuracy` that the
    # plateau and early stopping watch; `keep` = best keeps the weights of the epoch it peaked at, last the last.
    config.validation = ml_collections.ConfigDict()
    config.validation.source = "auto"
    config.validation.keep = "best"

    config.baselines = ml_collections.ConfigDict()  # the comparison rows (docs/protocol.md section 5)
    config.baselines.transition = "estimated"  # forward/backward: estimated (from a CE model) | true
    config.baselines.filter_percentile = 97.0  # anchor-point estimator's outlier filter
    config.baselines.beta_soft = 0.95
    config.baselines.beta_hard = 0.8

    config.train = ml_collections.ConfigDict()  # how every stage computes (tf_twostage.training.precision)
    config.train.dtype_policy = "float32"  # float32 | mixed_float16 (loss-scaled) | mixed_bfloat16
    config.train.jit_compile = False  # XLA-compile the train / test steps (it was slower on a 2-core CPU)
    # Prediction, feature extraction and evaluation batches; 0 = twice the training batch size.
    config.train.eval_batch_size = 0
    # Each training batch differentiated in this many slices, one update (gradient accumulation): the same
    # batch size at 1/k of the activation memory, slower per image; batch statistics are per slice. 1: off.
    config.train.micro_batches = 1

    config.label_issues = ml_collections.ConfigDict()  # bin/find_label_issues.py (issue 16)
    config.label_issues.folds = 5  # K of the out-of-sample (K-fold) predicted probabilities
    config.label_issues.rule = "auto"  # auto = adaptive; or one of tf_twostage.stage1.label_issues.RULES

    config.distribution = ml_collections.ConfigDict()
    config.distribution.strategy = "auto"  # auto | none | mirrored | multi_worker

    config.lock()
    return config


def eval_batch_size(config) -> int:
    """The batch size of every forward-only pass (predictions, features, evaluation, export checks)."""
    size = int(config.train.eval_batch_size)
    return size if size > 0 else 2 * int(config.batch_size)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a run recorded in `workdir/config.json`, as a locked ConfigDict.

    Lets programs that read a finished run (evaluate, report, export) use exactly the run's settings.
    """
    import json
    import os

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: {workdir!r} is not a run's workdir "
                                "(bin/run_experiment.py writes config.json first)")
    try:
        with open(path, encoding="utf-8") as file:
            saved = json.load(file)
    except (OSError, ValueError) as error:  # unreadable, or torn / not JSON
        raise ValueError(f"{path} cannot be read as a run's config ({error}); it is damaged: rerun the "
                         "run into a fresh --workdir") from error
    if not isinstance(saved, dict):
        raise ValueError(f"{path} holds {type(saved).__name__}, not a run's config (a JSON object)")
    config = base_config()
    try:
        config.update(saved)
    except (KeyError, AttributeError, TypeError) as error:
        raise ValueError(f"{path} does not match this version's config keys: {error}") from error
    return config


def placeholder_float():
    """A float key that may be left unset (None: "inherit") yet still be overridden from the command line."""
    return config_dict.placeholder(float)


def placeholder_str():
    """A string key that may be left unset (None) yet still be overridden from the command line."""
    return config_dict.placeholder(str)
