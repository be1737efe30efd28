#!/usr/bin/env python3
"""Evaluates a trained classifier on a split: accuracy, per-class accuracy, confusion matrix. See tf_twostage/programs/evaluate.py, or run with --help."""

from tf_twostage.programs.evaluate import run

if __name__ == "__main__":
    run()
