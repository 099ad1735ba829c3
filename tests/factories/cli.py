"""Running the ``opdesk`` command as a separate process, the way an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from opdesk.db import Database


def opdesk(
    *args: str, database: Database, data_dir: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m opdesk ARGS`` against ``database`` as its owner, with ``env`` added."""
    environ = {
        **os.environ,
        "OPDESK_DATABASE_URL": database.owner_url.render_as_string(hide_password=False),
        "OPDESK_DATA_DIR": str(data_dir),
        "OPDESK_LOG_LEVEL": "WARNING",
        **env,
    }
    environ.pop("OPDESK_APP_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "opdesk", *args],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
        # A guard against a hang, not a speed limit: `opdesk demo` builds two years of a
        # patient's visits and takes several times longer on a loaded machine.
        timeout=300,
    )
