"""Several processes may start embedded servers at once (pytest-xdist workers do).

On a new machine, run as root, the first start also creates the server's system user;
`.ci/run` removes that user before the suite so every CI run starts from that case.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

STARTS = 4

START_ONE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from opdesk.db import EmbeddedServer

    server = EmbeddedServer(Path(sys.argv[1]) / "pg", cleanup_mode="delete")
    print("started")
    server.stop()
    """
)


@pytest.mark.xdist_group("embedded-start")
def test_concurrent_first_starts_all_succeed(tmp_path: Path) -> None:
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", START_ONE, str(tmp_path / f"server-{n}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(STARTS)
    ]
    results = [p.communicate(timeout=180) for p in starts]
    failures = [err[-800:] for (out, err), p in zip(results, starts, strict=True) if p.returncode]
    assert failures == []
    assert all(out.strip() == "started" for out, _ in results)
