"""The paper's MNIST recipe (two-stage, temporal ensembling in Stage 2), every value as the paper states it.

Where the paper is silent, the value is the temporal-ensembling paper's (Laine & Aila, whose code the paper
"directly borrow[s]"; docs/protocol.md section 4), and where both are silent it says "not stated" and keeps our
default. Nothing here is tuned. Quotes are the paper's text, its section numbers in brackets.

  python bin/run_experiment.py --config=configs/paper/mnist.py --workdir=runs/paper_mnist
  python bin/run_experiment.py --config=configs/paper/mnist.py --config.data.name=mnist5k ...  # offline data
"""

from tf_twostage.config import base_config


def get_config():
    config = base_config()
    # [3] "In the first stage, we identify ... In the second stage, we train ... in a semi-supervised manner."
    config.method = "two_stage"
    # [4.1] "We test our method on three datasets: MNIST [24], ..." (mnist5k: the offline 5,000-image subset).
    config.data.name = "mnist"
    # [4.2] "we leave 10% out of the training set for validation and use the rest to train".
    config.data.val_fraction = 0.1
    # [4.1] "For the images in the CIFAR-10 and Clothing1M datasets, we subtract the per-pixel mean": not MNIST.
    config.data.subtract_mean = False
    # [4.1] "We change the labels following the paths 2 -> 7, 3 -> 8, 5 -> 6, and 7 -> 1"; Table 3's
    # headline column is asy. p = 0.6 (override noise.type / noise.rate for the other columns).
    config.noise.type = "asymmetric"
    config.noise.rate = 0.6
    config.noise.mapping = ""  # the paper's pairs

    # [4.2] "For MNIST, we implement a fully connected network with two dense hidden layers of size 128 and
    # dropout." The rate is not stated: 0.5, the temporal-ensembling paper's dropout.
    config.model.name = "mlp"
    config.model.hidden_units = (128, 128)
    config.model.dropout = 0.5
    config.model.input_noise = 0.0  # [4.2] the Gaussian noise layer is for "the semi-supervised learning model"

    # Stage 1 pre-training, [4.2]: "We use ... AdaGrad for MNIST. ... the initial learning rate is 0.1, and the
    # minimal learning rate is set to be 1e-7." "we decrease the learning rate by the ratio of 0.5 after the
    # validation accuracy saturates for up to 10 epochs." "We train our neural network for 40 epochs on MNIST".
    config.stage1.optimizer = "adagrad"
    config.stage1.learning_rate = 0.1
    config.stage1.lr_factor = 0.5
    config.stage1.lr_patience = 10
    config.stage1.min_lr = 1e-7
    config.stage1.epochs = 40
    # [3.1] "We pre-train a deep neural network classifier using the noisy data": plain cross-entropy, as the
    # "cross-entropy" row; class balancing ([3.3]) is what the paper's "improved baseline" adds, so Stage 1
    # stays unbalanced here (the mnist5k preset balances it: a deviation, see README).
    config.stage1.balance_classes = False
    config.batch_size = 128  # not stated (nor by Laine & Aila for pre-training): our default
    # [3.1] "we remove the labels of the data points for which the neural networks' predictions differ from
    # their original noisy labels ... rank them ... using the network's prediction P(c|x_i). We keep the images
    # for which the predicted probabilities are as high as 0.9. If less than 10% of the images of this class
    # are kept after that, we add more images down the ranking list such that ... the top 10% ... pass".
    config.stage1.rule = "confidence"
    config.stage1.posterior = "noisy"  # the network's own P(c|x), not a corrected one
    config.stage1.threshold = 0.9
    config.stage1.floor_fraction = 0.1
    config.stage1.top_up = "class"  # "down the ranking list" of the class
    # Which epoch's network ranks is not stated: the best-validation epoch (docs/protocol.md section 3).
    config.stage1.ranking = "best"

    # Stage 2, [3.2]: "For the other two smaller datasets, we directly borrow the original temporal ensembling
    # model from [23] ... and yet has to be trained for many more epochs."
    config.stage2.algorithm = "temporal_ensembling"
    # [3.2] "our semi-supervised learning of the network continues from the one trained in Stage 1."
    config.stage2.init_from_stage1 = True
    # [3.2] "For each minibatch of size N, we randomly choose N/2 labeled images and N/2 unlabeled ones." N is
    # not stated: Laine & Aila's batch of 100.
    config.stage2.batch_size = 100
    # [3.2] "the ramp-up and ramp-down cost are used on the smaller MNIST and CIFAR-10 datasets": Laine & Aila's
    # schedule: 300 epochs, Adam max learning rate 0.003, 80-epoch ramp-up, 50-epoch ramp-down (beta1 0.9->0.5),
    # w_max 30 for temporal ensembling scaled by the labeled fraction, ensemble momentum 0.6.
    config.stage2.epochs = 300
    config.stage2.epoch_unit = "all"
    config.stage2.learning_rate = 0.003
    config.stage2.rampup_epochs = 80
    config.stage2.rampdown_epochs = 50
    config.stage2.max_weight_te = 30.0
    config.stage2.scale_weight_by_labeled_fraction = True
    config.stage2.fixed_weight = 0.0
    config.stage2.ensemble_momentum = 0.6
    config.stage2.consistency_normalization = "classes"  # the normalization Laine & Aila's w_max refers to
    config.stage2.lr_patience = 0  # the learning rate follows the ramps
    config.stage2.early_stopping_patience = 0
    # [4.2] "Again, we add Gaussian noise layer for the semi-supervised learning model." Its place and stddev are
    # not stated: Laine & Aila's, on the input with stddev 0.15. Dropout as in Stage 1 (0.5, see above).
    config.stage2.input_noise = 0.15
    config.stage2.top_noise = 0.0
    config.stage2.dropout = 0.5
    # [3.2] "we apply some simple augmentations like horizontal flip and horizontal and vertical shift": a shift
    # of +-2 px (Laine & Aila's); no flip on digits (not stated for MNIST; a flipped digit is another symbol).
    config.stage2.translate_px = 2
    config.augment.flip = False
    config.augment.translate_px = 0  # Stage 1: no augmentation stated for MNIST
    config.stage2.finetune_epochs = 0
    return config
