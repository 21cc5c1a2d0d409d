"""The run id: made in one place, carried by every part of a run (evidence bundle, runner artifacts,
deploy lock, host history), however the run is started.

``carepath run`` makes it and passes it to ansible-runner as ``CAREPATH_RUN_ID``; under
``ansible-playbook``, ``ansible-runner`` or AWX the evidence callback makes it when the playbook
starts and sets ``CAREPATH_RUN_ID`` for the rest of the run; plays read it with the
``carepath_run_id`` lookup.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

#: The environment variable that carries the run id to everything a run starts.
RUN_ID_ENV = "CAREPATH_RUN_ID"


def new_run_id(playbook: Path) -> str:
    """``<UTC time>-<playbook>-<6 hex>``: names the runner's artifacts and the evidence bundle alike."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", playbook.stem)[:40] or "run"
    return f"{stamp}-{stem}-{secrets.token_hex(3)}"
