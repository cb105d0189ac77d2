"""Exit statuses of ``ser-edge``, defined once (sysexits.h names where one applies).

* :data:`EXIT_OK` 0: success.
* :data:`EXIT_FAILURE` 1: a runtime failure: a bad model, a skipped file, an event dropped,
  refused by the broker or left unacknowledged, ``listen`` timing out or refused.
* :data:`EX_USAGE` 2: bad usage (argparse's status).
* :data:`EX_CONFIG` 78: a configuration problem (one line naming the key).
* 128 + N: stopped by a second signal N (e.g. 143 for SIGTERM) before the clean shutdown ended.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EX_USAGE = 2
EX_CONFIG = 78
