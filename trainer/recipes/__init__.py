"""One module per ``ser-train`` command, each written as its stages: :mod:`.fit` (prepare data,
featurize, train the folds, score them, train and export the final model, report), :mod:`.evaluate`,
:mod:`.calibrate`, :mod:`.rescore` and :mod:`.report`. :mod:`.data` prepares clips for all of them,
:mod:`.runs` reads and writes the run folders.

Every command takes the parsed ``argparse.Namespace`` and returns the exit status; bad input raises
:class:`trainer.config.UsageError`.
"""


