"""Writes a Markdown report, with tables and plots, of one or many finished runs.

  python bin/report.py --output=DIR RUN [RUN ...] [--noimage_grids] [--images_per_class=4]

Each RUN is a run's workdir (holding results.json), a folder whose sub-folders are runs (e.g. the
benchmark's runs/benchmark: every sub-folder with a results.json or config.json), or a glob of either
('runs/*_seed0'; quote it, or let the shell expand it). Writes into DIR:

  report.md  the runs; test accuracy per method x noise setting, mean +- std over seeds (the paper's
             Table 3; two_stage runs are named two_stage_pi / two_stage_temporal_ensembling after
             their Stage-2 algorithm); % of training images with a correct, an incorrect or no label
             in the noisy set, after forward correction and after Stage 1 (Table 2); the plots;
  plots/     per run, as far as its files allow: the realized transition matrix (Figure 3), labels
             kept per class, kept versus dropped training images per class (Figure 4; rebuilds the
             run's data, --noimage_grids skips it), learning curves of every stage. With several
             runs each file name starts with the run's folder name.

Folders without results.json (unfinished runs) are listed as skipped. Exit codes: 0 done; 2 bad input
(a missing folder, no usable run, two runs of one method, noise setting and seed), nothing written.
"""


from absl import flags

from tf_twostage.programs import cli
from tf_twostage.reporting.run_report import write_report

_OUTPUT = flags.DEFINE_string("output", None, "Folder for report.md and plots/.")
_IMAGE_GRIDS = flags.DEFINE_bool("image_grids", True, "Draw kept versus dropped training images per class "
                                 "(rebuilds each two-stage run's data).")
_IMAGES_PER_CLASS = flags.DEFINE_integer("images_per_class", 4, "Kept (and dropped) images per class in the grid.")
flags.mark_flags_as_required(["output"])


def main(argv):
    run_paths = argv[1:]
    if not run_paths:
        raise cli.UsageError("give at least one run folder (or a folder of runs) after the flags")
    path = write_report(run_paths, _OUTPUT.value, image_grids=_IMAGE_GRIDS.value,
                        images_per_class=_IMAGES_PER_CLASS.value)
    print(f"report: {path}")
    return 0


def run():
    """Entry point of `bin/report.py` and the console script."""
    cli.run_program(main)
