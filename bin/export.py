#!/usr/bin/env python3
"""Exports a run's classifier as a SavedModel for TF Serving, pre-processing inside. See tf_twostage/programs/export.py, or run with --help."""

from tf_twostage.programs.export import run

if __name__ == "__main__":
    run()
