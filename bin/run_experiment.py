#!/usr/bin/env python3
"""Runs a whole experiment from a config and prints its result table. See tf_twostage/programs/run_experiment.py, or run with --help."""

from tf_twostage.programs.run_experiment import run

if __name__ == "__main__":
    run()
