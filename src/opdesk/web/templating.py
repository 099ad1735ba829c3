"""Jinja2 pages: layout, navigation, flash messages and the form-error pattern.

Templates live beside their domain (``opdesk/<domain>/templates/<domain>/...``) and
the shared layout in ``opdesk/templates``; one loader searches them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from opdesk.errors import DomainError, FieldError, InvalidInput
from opdesk.formatting import clock_time, day_name, local_time
from opdesk.security.permissions import DEV_ONLY, allowed
from opdesk.validation import ascii_digits, phone_display
from opdesk.web.assets import ASSETS
from opdesk.web.deps import csrf_token, services

PACKAGE = Path(__file__).resolve().parent.parent
FLASH_COOKIE = "opdesk_flash"
FLASH_LEVELS = ("info", "success", "warning", "error")


def template_dirs() -> list[str]:
    return [str(PACKAGE / "templates"), *sorted(str(p) for p in PACKAGE.glob("*/templates"))]


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    section: str = ""  # base.html folds the "clinical" and "admin" entries into menus
    current: bool = False  # the open page's entry (aria-current): see ``current_href``


def current_href(path: str, hrefs: Iterable[str]) -> str | None:
    """The entry the open page belongs to: the longest href that is the path or one of
    its parent folders (``/me/appointments/x`` is under ``/me/appointments``, and so not
    under ``/me`` as well). ``/`` is current only on the home page itself.
    """
    matches = [h for h in hrefs if path == h or (h != "/" and path.startswith(h.rstrip("/") + "/"))]
    return max(matches, key=len, default=None)


# Where an entry sits in the bar; within a section, entries keep the order the app
# collects them in (see ``PAGE_MODULES`` in app.py).
SECTIONS = ("patient", "desk", "billing", "clinical", "admin", "account", "dev")


@dataclass(frozen=True)
class NavEntry:
    """A link a domain puts in the navigation, shown to whoever may do ``action``.

    Each page module lists its own as ``NAV``; ``DEV_ONLY`` entries show on a
    developer's machine to everyone.
    """

    label: str
    href: str
    action: str
    section: str

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"unknown navigation section {self.section!r}")


def bar_label(entry: NavEntry, section_hrefs: Iterable[str]) -> str:
    """The label a patient's entry shows in the bar: a page inside another of the
    patient's entries (``/me/bills`` inside ``/me``, "My clinic") drops its "My ", which
    that entry already says; the bar then fits one line at 1280 px.
    """
    if entry.section != "patient" or not entry.label.startswith("My "):
        return entry.label
    inside = any(h != entry.href and current_href(entry.href, [h]) for h in section_hrefs)
    return first_upper(entry.label[3:]) if inside else entry.label


SIGNED_OUT_NAV = (
    NavItem("Home", "/"),
    NavItem("Staff sign-in", "/sign-in"),
    NavItem("Patient sign-in", "/patient/sign-in"),
)


def form_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as ``{field name: reason}`` for the form macros, in people's words."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "__all__"
        errors.setdefault(name, friendly_reason(err))
    return errors


# Pydantic's wording is meant for programmers ("String should have at least 1 character");
# people filling a form get what to do. ``{...}`` are filled from the error's context.
FRIENDLY = {
    "missing": "fill this in",
    "string_too_short": "enter at least {min_length} characters",
    "string_too_long": "use at most {max_length} characters",
    "too_short": "add at least {min_length}",
    "too_long": "add at most {max_length}",
    "literal_error": "choose one of the options",
    "enum": "choose one of the options",
    "string_pattern_mismatch": "check the format: some characters are not allowed here",
    "string_type": "fill this in",
    "date_from_datetime_parsing": "enter a date",
    "date_parsing": "enter a date",
    "date_type": "enter a date",
    "datetime_parsing": "enter a date and time",
    "datetime_from_date_parsing": "enter a date and time",
    "time_parsing": "enter a time as HH:MM",
    "int_parsing": "enter a whole number",
    "int_from_float": "enter a whole number",
    "int_type": "enter a whole number",
    "float_parsing": "enter a number",
    "decimal_parsing": "enter a number",
    "bool_parsing": "choose yes or no",
    "uuid_parsing": "choose from the list",
    "uuid_type": "choose from the list",
    "greater_than": "enter more than {gt}",
    "greater_than_equal": "enter {ge} or more",
    "less_than": "enter less than {lt}",
    "less_than_equal": "enter {le} or less",
    "json_invalid": "send the form again",
}


def friendly_reason(err: Mapping[str, Any]) -> str:
    """One pydantic error in people's words (a validator's own message is kept)."""
    kind = str(err.get("type", ""))
    context = err.get("ctx") or {}
    if kind == "string_too_short" and context.get("min_length") == 1:
        return FRIENDLY["missing"]
    template = FRIENDLY.get(kind)
    if template is not None:
        try:
            return template.format(**context)
        except (KeyError, IndexError):
            pass
    return clean_message(str(err.get("msg", "")))


def first_upper(text: str) -> str:
    """ "fill this in" -> "Fill this in" (unlike ``capitalize``, the rest stays as it is)."""
    return text[:1].upper() + text[1:]


def clean_message(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def humanize(name: str) -> str:
    """A field's API name for people: ``untilDate`` -> "Until date",
    ``templates.0.endTime`` -> "End time, row 1", ``path.patient_id`` -> "Patient".
    """
    parts = [p for p in name.split(".") if p not in ("body", "query", "path", "form")]
    rows = [int(p) + 1 for p in parts if ascii_digits(p)]
    words = [p for p in parts if not ascii_digits(p)]
    leaf = words[-1] if words else name
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", leaf).replace("_", " ").strip()
    spaced = re.sub(r"\bid\b", "", spaced, flags=re.IGNORECASE).strip() or spaced
    text = spaced[:1].upper() + spaced[1:].lower()
    return f"{text}, row {rows[-1]}" if rows else text


def _key(name: str) -> str:
    """Names compared loosely: ``untilDate``, ``until_date`` and ``until-date`` are one."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


class FormLabels(HTMLParser):
    """The label of every form field on a page, by the field's ``name`` (and ``id``):
    ``<label for>``, a control inside its ``<label>``, or ``aria-label``.
    """

    CONTROLS = ("input", "select", "textarea")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.by_for: dict[str, str] = {}
        self.controls: list[tuple[str, str, str | None]] = []  # (name, id, own label)
        self._label: list[str] | None = None
        self._label_for: str | None = None
        self._label_open = False  # still reading the label's own words
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "label":
            self._label, self._label_for, self._label_open = [], attr.get("for"), True
        elif tag in self.CONTROLS:
            own = attr.get("aria-label") or (self._text() if self._label is not None else None)
            if attr.get("type") != "hidden":
                self.controls.append((attr.get("name", ""), attr.get("id", ""), own or None))
            self._label_open = False
        elif tag in ("small", "div", "fieldset", "ul"):
            self._label_open = False
        elif attr.get("aria-hidden") == "true":
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self._label is not None:
            if self._label_for:
                self.by_for[self._label_for] = self._text()
            self._label, self._label_for = None, None
        elif tag == "span" and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if self._label is not None and self._label_open and not self._hidden:
            self._label.append(data)

    def _text(self) -> str:
        return " ".join("".join(self._label or []).split()).rstrip(" :*")

    def labels(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, ident, own in self.controls:
            label = self.by_for.get(ident) or own
            if label:
                for key in (name, ident.removeprefix("f-").replace("-", ".")):
                    if key:
                        found.setdefault(key, label)
        return found


def page_labels(html: str) -> dict[str, str]:
    parser = FormLabels()
    parser.feed(html)
    return parser.labels()


def field_label(name: str, labels: Mapping[str, str] | None = None) -> str:
    """What the form calls the field ``name`` (an API name such as ``templates.0.endTime``
    matches the form's ``end_time_0``), else the name in words.
    """
    labels = labels or {}
    if name in labels:
        return labels[name]
    loose = {_key(k): v for k, v in labels.items()}
    parts = name.split(".")
    rows = [p for p in parts if ascii_digits(p)]
    candidates = [_key(name), _key(parts[-1])]
    if rows:
        candidates.insert(0, _key(parts[-1]) + rows[-1])
    for candidate in candidates:
        if candidate in loose:
            return loose[candidate]
    return humanize(name)


def field_message(field: str, reason: str, labels: Mapping[str, str] | None = None) -> str:
    """ "Until: must be on or after “From”": the field as labelled, and other fields the
    reason mentions by their API names (``fromDate``) as labelled too.
    """
    known = {_key(k) for k in (labels or {})}

    def named(match: re.Match[str]) -> str:
        word = match[0]
        if _key(word) in known:
            return f"“{field_label(word, labels)}”"
        return humanize(word).lower()

    reason = re.sub(r"\b[a-z]+(?:[A-Z][a-z0-9]*)+\b", named, reason)
    return f"{field_label(field, labels)}: {reason}"


class Refusal(str):
    """A refusal's text that remembers its bad fields, so the page showing it (passed in
    a page's context) names them as that page's form labels them.
    """

    errors: tuple[FieldError, ...] = ()


def readable(exc: DomainError, labels: Mapping[str, str] | None = None) -> str:
    """What a person reads when an action is refused: each bad field by its label."""
    if isinstance(exc, InvalidInput) and exc.errors:
        text = Refusal(
            "; ".join(field_message(e.field, e.reason, labels) for e in exc.errors) + "."
        )
        text.errors = tuple(exc.errors)
        return text
    return str(exc)


class FieldErrors(dict[str, str]):
    """A form's ``{field: reason}`` that also knows each field's label on the page."""

    def __init__(self, errors: Mapping[str, str], labels: Mapping[str, str]) -> None:
        super().__init__(errors)
        self.labels = dict(labels)

    def label_of(self, name: str) -> str:
        return field_label(name, self.labels)


class Pages:
    """The template environment, the navigation and the signed flash cookie."""

    def __init__(
        self,
        flash_key: bytes,
        *,
        navigation: tuple[NavEntry, ...] = (),
        filters: Mapping[str, Callable[..., Any]] | None = None,
        dev: bool = False,
    ) -> None:
        self.env = Environment(
            loader=FileSystemLoader(template_dirs()),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["phone"] = phone_display
        self.env.filters["local"] = local_time
        self.env.filters["clock"] = clock_time
        self.env.filters["dayname"] = day_name
        self.env.filters.update(filters or {})
        self.env.filters["first_upper"] = first_upper
        self.env.globals["static_url"] = ASSETS.url
        self._flash_key = flash_key
        self.dev = dev
        self.navigation = sorted(navigation, key=lambda entry: SECTIONS.index(entry.section))

    def nav_items(self, request: Request) -> list[NavItem]:
        """The navigation for whoever is looking, from the permission table."""
        principal = getattr(request.state, "principal", None)
        role = principal.role if principal is not None and principal.active else None
        items = [] if role else list(SIGNED_OUT_NAV)
        shown = [
            entry
            for entry in self.navigation
            if (
                self.dev
                if entry.action == DEV_ONLY
                else role is not None and allowed(role, entry.action)
            )
        ]
        patient = [entry.href for entry in shown if entry.section == "patient"]
        items += [NavItem(bar_label(e, patient), e.href, e.section) for e in shown]
        current = current_href(request.url.path, [item.href for item in items])
        return [replace(item, current=item.href == current) for item in items]

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        flashes = self._read_flashes(request)
        principal = getattr(request.state, "principal", None)
        values = {
            "request": request,
            "principal": principal,
            "csrf_token": csrf_for(request, principal),
            "nav": self.nav_items(request),
            "flashes": [(level, text) for level, text, _ in flashes],
            "errors": {},
            "values": {},
            **(context or {}),
        }
        page = self.env.get_template(template)
        html = page.render(values)
        errors = values["errors"]
        refusals = [k for k, v in values.items() if isinstance(v, Refusal) and v.errors]
        if errors or refusals or any(fields for _, _, fields in flashes):
            # Name each bad field as this page's form labels it: drawn once more with
            # the labels read from the first drawing (only when something was refused).
            labels = page_labels(html)
            values["errors"] = FieldErrors(errors, labels)
            values["flashes"] = [
                (level, readable(InvalidInput(fields), labels) if fields else text)
                for level, text, fields in flashes
            ]
            for key in refusals:
                values[key] = readable(InvalidInput(list(values[key].errors)), labels)
            html = page.render(values)
        response = HTMLResponse(html, status_code=status_code)
        if flashes:
            # Secure like the cookie it removes (set by web.pages.set_cookie).
            secure = not self.dev or request.url.scheme == "https"
            response.delete_cookie(
                FLASH_COOKIE, path="/", httponly=True, samesite="lax", secure=secure
            )
        return response

    def sign_flash(self, level: str, message: str, fields: list[FieldError] | None = None) -> str:
        """The flash cookie's value: the message, signed so no one else can plant one.

        With ``fields`` (a refused form's bad fields) the page that shows the message
        names each field as its form labels it. Set it with :func:`opdesk.web.pages.flash`.
        """
        item: list[Any] = [level, message]
        if fields:
            item.append([[f.field, f.reason] for f in fields])
        body = base64.urlsafe_b64encode(json.dumps([item]).encode()).decode()
        mac = hmac.new(self._flash_key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def _read_flashes(self, request: Request) -> list[tuple[str, str, list[FieldError]]]:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw or "." not in raw:
            return []
        body, mac = raw.rsplit(".", 1)
        expected = hmac.new(self._flash_key, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return []
        try:
            items = json.loads(base64.urlsafe_b64decode(body))
        except ValueError:
            return []
        flashes = []
        for level, text, *rest in items:
            if level in FLASH_LEVELS and isinstance(text, str):
                fields = [FieldError(str(f), str(r)) for f, r in (rest[0] if rest else [])]
                flashes.append((str(level), text, fields))
        return flashes


def csrf_for(request: Request, principal: Any) -> str | None:
    if principal is None or not principal.via_cookie:
        return None
    return csrf_token(request, principal)


def render_error(
    request: Request, status: int, title: str, detail: str, items: tuple[str, ...] = ()
) -> Response:
    return services(request).pages.render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail, "items": items},
        status_code=status,
    )
