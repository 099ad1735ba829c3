"""Static files under content-hashed names, cached for a year and sent compressed.

Templates link a file as ``{{ static_url("app.css") }}``, which gives
``/static/app.3f2a9c0d1e4b.css``: the name changes whenever the content does, so
browsers may keep it for a year without asking again (``immutable``). A stylesheet's
``url(...)`` references (the fonts) are rewritten to hashed names the same way, and its
own hash covers them. A plain name still works and is revalidated on every use.

Text files (CSS, JS, SVG) are compressed once per process, with Brotli at high quality or
gzip, whichever the browser accepts; fonts (WOFF2) are compressed already.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
import brotli
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

PREFIX = "/static/"
HASH_LENGTH = 12
# ``name.<hash>.ext``: the hash sits before the last suffix.
HASHED = re.compile(
    r"^(?P<stem>.+)\.(?P<hash>[0-9a-f]{" + str(HASH_LENGTH) + r"})(?P<suffix>\.[A-Za-z0-9]+)$"
)
CSS_URL = re.compile(r"url\((?P<quote>['\"]?)(?P<ref>[^'\")]+)(?P=quote)\)")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "public, no-cache"
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
}


def media_type(path: str) -> str:
    suffix = Path(path).suffix
    return TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


@dataclass
class Asset:
    body: bytes
    digest: str
    media_type: str
    # What the content was made from: (file, mtime_ns, size); a change makes it again.
    sources: tuple[tuple[Path, int, int], ...]
    encoded: dict[str, bytes] = field(default_factory=dict)

    @property
    def compressible(self) -> bool:
        return self.media_type.startswith(COMPRESSIBLE) and len(self.body) >= 256

    def encoding(self, coding: str) -> bytes:
        """The body compressed with ``br`` or ``gzip`` (made once, kept)."""
        if coding not in self.encoded:
            if coding == "br":
                quality = 11 if len(self.body) < 300_000 else 9
                self.encoded[coding] = brotli.compress(self.body, quality=quality)
            else:
                self.encoded[coding] = gzip.compress(self.body, compresslevel=9, mtime=0)
        return self.encoded[coding]


def _stamp(path: Path) -> tuple[Path, int, int]:
    stat = path.stat()
    return (path, stat.st_mtime_ns, stat.st_size)


def _fresh(sources: tuple[tuple[Path, int, int], ...]) -> bool:
    try:
        return all(_stamp(path) == (path, mtime, size) for path, mtime, size in sources)
    except OSError:
        return False


class StaticAssets:
    """The files of one folder: their hashed URLs, and the ASGI app that serves them."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._assets: dict[str, Asset] = {}

    def url(self, name: str) -> str:
        """``/static/<name with its content hash>``; a missing file keeps its plain name."""
        asset = self.asset(name)
        if asset is None:
            return PREFIX + name
        stem, dot, suffix = name.rpartition(".")
        return f"{PREFIX}{stem}.{asset.digest}{dot}{suffix}" if dot else PREFIX + name

    def file(self, name: str) -> Path | None:
        if not name or name.startswith("/") or "\\" in name or "\x00" in name:
            return None
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def asset(self, name: str) -> Asset | None:
        known = self._assets.get(name)
        if known is not None and _fresh(known.sources):
            return known
        path = self.file(name)
        if path is None:
            return None
        sources = [_stamp(path)]
        body = path.read_bytes()
        if path.suffix == ".css":
            body = self._link_css(name, body, sources)
        digest = hashlib.sha256(body).hexdigest()[:HASH_LENGTH]
        asset = Asset(body, digest, media_type(name), tuple(sources))
        self._assets[name] = asset
        return asset

    def _link_css(self, name: str, body: bytes, sources: list[tuple[Path, int, int]]) -> bytes:
        """Point a stylesheet's relative ``url(...)`` at the hashed names of those files."""
        folder = Path(name).parent

        def hashed(match: re.Match[str]) -> str:
            ref = match["ref"]
            if ":" in ref or ref.startswith(("/", "#")) or ref.endswith(".css"):
                return match[0]  # data:, http(s):, absolute and @import references stay
            asset = self.asset(os.path.normpath(folder / ref))
            if asset is None:
                return match[0]
            sources.extend(asset.sources)
            leaf = ref.rsplit("/", 1)[-1]
            stem, _, suffix = leaf.rpartition(".")
            return f"url({ref.removesuffix(leaf)}{stem}.{asset.digest}.{suffix})"

        return CSS_URL.sub(hashed, body.decode("utf-8")).encode("utf-8")

    def lookup(self, name: str) -> tuple[Asset, bool] | None:
        """The asset a path names, and whether the name carried its current hash."""
        match = HASHED.match(name)
        if match is not None:
            plain = match["stem"] + match["suffix"]
            asset = self.asset(plain)
            if asset is not None:
                # An older hash (a page from before a deploy) gets today's file, not cached.
                return asset, asset.digest == match["hash"]
        asset = self.asset(name)
        return (asset, False) if asset is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``/static/...`` (mounted there, so ``path`` is what follows the mount)."""
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405)
        name = scope["path"].removeprefix(scope.get("root_path", "")).lstrip("/")
        found = await anyio.to_thread.run_sync(self.lookup, name)
        if found is None:
            raise HTTPException(404)
        asset, current = found
        headers = [
            (b"content-type", _content_type(asset.media_type)),
            (b"cache-control", (IMMUTABLE if current else REVALIDATE).encode()),
            (b"etag", f'"{asset.digest}"'.encode()),
        ]
        if asset.compressible:
            headers.append((b"vary", b"Accept-Encoding"))
        if not current and _header(scope, b"if-none-match") == f'"{asset.digest}"':
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = asset.body
        coding = (
            _chosen_encoding(_header(scope, b"accept-encoding")) if asset.compressible else None
        )
        if coding is not None:
            body = await anyio.to_thread.run_sync(asset.encoding, coding)
            headers.append((b"content-encoding", coding.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


def _content_type(media: str) -> bytes:
    text = media.startswith("text/") or media in ("image/svg+xml", "application/json")
    return f"{media}; charset=utf-8".encode() if text else media.encode()


def _header(scope: Scope, wanted: bytes) -> str:
    values = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == wanted]
    return ", ".join(values)


def accepted_encodings(header: str) -> set[str]:
    """The codings ``Accept-Encoding`` allows (``q=0`` refuses one)."""
    allowed = set()
    for part in header.split(","):
        coding, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if coding and quality > 0:
            allowed.add(coding.lower())
    return allowed


def _chosen_encoding(header: str) -> str | None:
    allowed = accepted_encodings(header)
    return next((c for c in ("br", "gzip") if c in allowed), None)


ASSETS = StaticAssets(Path(__file__).resolve().parent.parent / "static")
