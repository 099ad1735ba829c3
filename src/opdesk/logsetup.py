"""JSON log lines on stderr.

Log records carry only what operators need: no request bodies, no query strings (they
may hold phone numbers), no headers (they may hold tokens).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log prints full URLs with query strings; ours does not.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # fontTools logs every glyph table it subsets while fpdf2 embeds a font (thousands of
    # lines per PDF); only its warnings concern an operator.
    logging.getLogger("fontTools").setLevel(max(logging.WARNING, root.level))
    # The hot pool's reconnect attempts while the database is away, one warning each:
    # opdesk.database already says once that it went and once that it is back.
    logging.getLogger("psycopg.pool").setLevel(max(logging.ERROR, root.level))
