#!/usr/bin/env python3
"""Stage 1, step 2: keep the labels that are very likely correct (after bin/train_stage1.py). See tf_twostage/programs/select_labels.py, or run with --help."""

from tf_twostage.programs.select_labels import run

if __name__ == "__main__":
    run()
