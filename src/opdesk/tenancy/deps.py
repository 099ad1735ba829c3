"""What the clinic routers share: the clinic code as it stands in a path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

SlugPath = Annotated[str, Path(min_length=3, max_length=40, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
