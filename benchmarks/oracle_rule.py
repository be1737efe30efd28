#!/usr/bin/env python3
"""One cell of `benchmarks/oracle_kept.py`: a two-stage run whose Stage-1 kept set is an oracle's.

  python benchmarks/oracle_rule.py SHARE PURITY <bin/run_experiment.py flags>

In every class, SHARE of its noisy-labelled training images are kept, PURITY of them with their true label and
the rest with a wrong one (drawn at random among each kind, from the run's seed). A diagnostic: nothing a user
runs can know the true labels. Its own script (no flags of its own) so that the runner parses the rest.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def oracle_rule(share: float, purity: float):
    """A drop-in for `tf_twostage.runs.stage1.apply_rule` that keeps an oracle's labels."""
    def apply_rule(config, data, rule, probabilities, labels, scores=None, noisy_probabilities=None):
        split = data.train if len(labels) == len(data.train) else data.validation
        clean = split.clean_labels
        rng = np.random.default_rng(int(config.seed) + 17)
        kept = np.zeros(len(labels), bool)
        for c in range(data.num_classes):
            members = np.flatnonzero(labels == c)
            count = int(round(share * len(members)))
            right, wrong = members[clean[members] == c], members[clean[members] != c]
            n_right = min(len(right), int(round(count * purity)))
            n_wrong = min(len(wrong), count - n_right)
            kept[rng.choice(right, n_right, replace=False)] = True
            if n_wrong:
                kept[rng.choice(wrong, n_wrong, replace=False)] = True
        return kept
    return apply_rule


if __name__ == "__main__":
    import tf_twostage.runs.stage1 as stage1
    from tf_twostage.programs.run_experiment import run

    stage1.apply_rule = oracle_rule(float(sys.argv[1]), float(sys.argv[2]))
    sys.argv = [sys.argv[0], *sys.argv[3:]]
    run()
