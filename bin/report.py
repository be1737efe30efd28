#!/usr/bin/env python3
"""Writes a Markdown report, with tables and plots, of one or many finished runs. See tf_twostage/programs/report.py, or run with --help."""

from tf_twostage.programs.report import run

if __name__ == "__main__":
    run()
