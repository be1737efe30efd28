#!/usr/bin/env python3
"""Which labels are likely wrong, and what should they be? See tf_twostage/programs/find_label_issues.py, or run with --help."""

from tf_twostage.programs.find_label_issues import run

if __name__ == "__main__":
    run()
