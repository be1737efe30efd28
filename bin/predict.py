#!/usr/bin/env python3
"""Classifies image files with an exported SavedModel and writes one CSV row per image. See tf_twostage/programs/predict.py, or run with --help."""

from tf_twostage.programs.predict import run

if __name__ == "__main__":
    run()
