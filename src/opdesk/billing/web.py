"""Billing's pages (filled in by the billing pages work)."""

from __future__ import annotations

from fastapi import APIRouter

from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV: tuple[NavEntry, ...] = ()
