#!/usr/bin/env python3
"""Stage 1, step 1: pre-train on the noisy labels and record the predictions to rank them with. See tf_twostage/programs/train_stage1.py, or run with --help."""

from tf_twostage.programs.train_stage1 import run

if __name__ == "__main__":
    run()
