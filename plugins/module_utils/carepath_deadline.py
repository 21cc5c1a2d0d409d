# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Try something on the managed host until it succeeds or a wall-clock deadline passes.

The gates of a blue-green deploy (carepath_health, carepath_hl7_probe) poll on the host itself
rather than as a loop of module runs, so a deadline is wall-clock seconds however loaded the
controller is. Standard library only: this runs on managed hosts.
"""

from __future__ import annotations

import time


def until_deadline(attempt, deadline, interval, clock=time.monotonic, sleep=time.sleep):
    """Call ``attempt()`` (which returns ``(done, result)``) until ``done`` or ``deadline`` seconds pass.

    At least one try is made; no try starts once the next one could not finish before the
    deadline. Returns the last ``result`` with ``attempts`` and ``elapsed`` (seconds) added.
    """
    start = clock()
    attempts = 0
    while True:
        attempts += 1
        done, result = attempt()
        elapsed = clock() - start
        if done or elapsed + interval > deadline:
            result.update(attempts=attempts, elapsed=round(elapsed, 3))
            return result
        sleep(interval)
