"""Charts drawn on the server as SVG, for the reports dashboard: they print, need no
JavaScript, and sit inline in a page (``{{ chart }}``) as ``markupsafe.Markup``.

Plain data in, markup out; this module reads no database.

- ``line_chart``: a daily trend (7, 30 or 90 days); a day without data (None) is a gap in
  the line, not a zero.
- ``bar_chart``: one bar a label (no-show rate by weekday, hour or booking channel; revenue
  by payment method); the value is written above each bar.

How they are drawn:

- The y axis starts at 0 (below it only for negative values, such as a day whose refunds
  exceed its takings) and has "nice" ticks, steps of 1, 2 or 5 times a power of ten, at most five
  intervals: a highest value of 87 gives 0, 20, 40, 60, 80, 100. Counts and money step by
  whole units.
- Money is written as clinics in India write it (``formatting.rupees``: ₹1,20,000, paise
  only when there are any); a percentage is a number from 0 to 100 (12.5 → "12.5%").
- Day labels ("1 Dec") are written every Nth day, counted back from the last day so the
  latest is always named, N chosen so that the labels cannot overlap.
- Colours are fixed: the pages' jade for the data, and currentColor (the page's text
  colour) for text, axes and grid lines. A highlighted bar is hatched as well as darker,
  so it still stands out printed in black and white.
- Only presentation attributes, no ``style``: the pages' Content-Security-Policy allows no
  inline styles. The SVG has a ``viewBox`` and ``width="100%"``, so it scales down to a
  phone; its text is sized for a chart between 350 and 700 px wide.
- Everything a caller gives (titles, labels) is escaped. The chart is an image to
  assistive technology (``role="img"``, ``aria-label``, ``<title>`` and ``<desc>``), and
  each point and bar carries a ``<title>`` that a browser shows on hover.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from markupsafe import Markup, escape

from opdesk.formatting import rupees

Number = float | Decimal | int

EMPTY = "No data for this period"
INK = "#007a50"  # the pages' jade (Pico's primary): a mid grey in black and white
MARK = "#8a2c0d"  # a highlighted bar: dark rust, hatched
PAD = 8.0
TITLE_SIZE = 17.0
TEXT_SIZE = 14.0
SMALL_SIZE = 13.0
MIN_VALUE_SIZE = 9.0
MAX_INTERVALS = 5
NICE = (1, 2, 5)


# Numbers and their text


def _decimal(value: Number) -> Decimal:
    if isinstance(value, bool):
        raise TypeError("a chart value is a number, not a bool")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    else:
        number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"a chart value must be a finite number, got {value!r}")
    return number


def nice_ticks(low: Decimal, high: Decimal, *, whole: bool) -> list[Decimal]:
    """The y axis' ticks: from 0 (or below it, for negative values) past ``high`` in steps
    of 1, 2 or 5 times a power of ten, at least two and at most five intervals; whole steps
    when ``whole``.
    """
    low, high = min(low, Decimal(0)), max(high, Decimal(0))
    if low == high:
        high = low + 1
    span = high - low
    exponent = math.floor(math.log10(float(span / MAX_INTERVALS))) - 1
    while True:
        for m in NICE:
            step = Decimal(m).scaleb(exponent)
            if whole and step < 1:
                continue
            bottom = (low / step).to_integral_value(rounding=ROUND_FLOOR)
            top = (high / step).to_integral_value(rounding=ROUND_CEILING)
            if top - bottom <= MAX_INTERVALS:
                if top - bottom < 2:
                    top = bottom + 2
                return [_tidy(step * k) for k in range(int(bottom), int(top) + 1)]
        exponent += 1


def _tidy(value: Decimal) -> Decimal:
    """``4E+1`` → ``40``, ``0.20`` → ``0.2``."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _plain(value: Decimal) -> str:
    """A number with Indian digit grouping (1,20,000) and no trailing zeros (2.5)."""
    text = rupees(value).replace("\N{INDIAN RUPEE SIGN}", "")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _money(value: Decimal) -> str:
    """₹1,20,000: the paise only when there are any."""
    return rupees(value).removesuffix(".00")


@dataclass(frozen=True)
class _Format:
    money: bool = False
    percent: bool = False

    def tick(self, value: Decimal) -> str:
        if self.money:
            return _money(value)
        return _plain(value) + ("%" if self.percent else "")

    def value(self, value: Decimal) -> str:
        if self.money:
            return _money(value)
        rounded = value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        return _plain(rounded) + ("%" if self.percent else "")


def _text_width(text: str, size: float) -> float:
    """About how wide ``text`` is drawn at ``size`` (no font metrics on the server):
    combining marks take no room, Indic letters a little more than Latin ones.
    """
    units = 0.0
    for ch in text:
        if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        if ch in " ,.:;'|":
            units += 0.3
        elif "\u0900" <= ch <= "\u0dff":
            units += 0.72
        else:
            units += 0.6
    return units * size


def _day(day: date) -> str:
    return f"{day.day} {day:%b}"


def _long_day(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


# SVG


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _el(tag: str, content: str | None = None, /, **attrs: object) -> str:
    """One element; attribute names with ``_`` get ``-`` (``text_anchor``), a trailing ``_``
    is dropped (``class_``); ``content`` is escaped, and None makes it self-closing.
    """
    parts = [tag]
    for name, value in attrs.items():
        if value is None:
            continue
        shown = _n(value) if isinstance(value, float) else str(value)
        parts.append(f'{name.rstrip("_").replace("_", "-")}="{escape(shown)}"')
    opening = " ".join(parts)
    if content is None:
        return f"<{opening}/>"
    return f"<{opening}>{escape(content)}</{tag}>"


def _wrap(tag: str, children: Iterable[str], /, **attrs: object) -> str:
    """An element around children already built by ``_el`` or ``_wrap``."""
    opening = _el(tag, **attrs)[:-2]
    return f"{opening}>{''.join(children)}</{tag}>"


def _svg(width: int, height: int, title: str, desc: str, kind: str, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}" class="chart chart-{kind}" '
        f'font-size="{_n(TEXT_SIZE)}">'
    )
    # Every piece was built by _el or _wrap, which escape what they are given.
    svg = head + _el("title", title) + _el("desc", desc) + "".join(body) + "</svg>"
    return Markup(svg)  # noqa: S704


def _heading(title: str) -> str:
    return _el(
        "text",
        title,
        x=PAD,
        y=PAD + TITLE_SIZE,
        font_size=TITLE_SIZE,
        font_weight="600",
        fill="currentColor",
        class_="chart-title",
    )


def _empty(width: int, height: int, title: str, kind: str) -> Markup:
    body = [
        _el(
            "rect",
            x=0.5,
            y=0.5,
            width=width - 1.0,
            height=height - 1.0,
            rx=4,
            fill="none",
            stroke="currentColor",
            stroke_opacity="0.3",
        ),
        _heading(title),
        _el(
            "text",
            EMPTY,
            x=width / 2,
            y=height / 2 + TEXT_SIZE / 2,
            text_anchor="middle",
            fill="currentColor",
            fill_opacity="0.75",
            class_="chart-empty",
        ),
    ]
    return _svg(width, height, title, f"{title}: {EMPTY.lower()}.", kind, body)


@dataclass(frozen=True)
class _Axis:
    """The y axis: its ticks, and where a value falls between ``top`` and ``bottom``."""

    ticks: list[Decimal]
    top: float
    bottom: float

    def y(self, value: Decimal) -> float:
        low, high = self.ticks[0], self.ticks[-1]
        share = float((value - low) / (high - low))
        return self.bottom - share * (self.bottom - self.top)


def _grid(axis: _Axis, fmt: _Format, left: float, right: float) -> list[str]:
    """A faint line and a label at each tick; the zero line stronger."""
    out = []
    for tick in axis.ticks:
        y = axis.y(tick)
        out.append(
            _el(
                "line",
                x1=left,
                y1=y,
                x2=right,
                y2=y,
                stroke="currentColor",
                stroke_opacity="0.55" if tick == 0 else "0.15",
                stroke_width="1",
            )
        )
        out.append(
            _el(
                "text",
                fmt.tick(tick),
                x=left - 6,
                y=y + TEXT_SIZE * 0.35,
                text_anchor="end",
                fill="currentColor",
                class_="tick",
            )
        )
    return out


def _tick_room(ticks: list[Decimal], fmt: _Format) -> float:
    return max(_text_width(fmt.tick(t), TEXT_SIZE) for t in ticks) + 8


# The line chart


def line_chart(
    points: Sequence[tuple[date, Number | None]],
    *,
    title: str,
    y_label: str,
    money: bool = False,
    width: int = 640,
    height: int = 200,
) -> Markup:
    """A daily trend: one point a day, None for a day without data (a gap in the line)."""
    days = sorted(points, key=lambda point: point[0])
    known = [(day, _decimal(value)) for day, value in days if value is not None]
    if not known:
        return _empty(width, height, title, "line")
    values = [value for _, value in known]
    whole = money or all(isinstance(v, int) for _, v in days if v is not None)
    fmt = _Format(money=money)
    axis_top = PAD + TITLE_SIZE + 6 + SMALL_SIZE + 6 + TEXT_SIZE * 0.7  # clear of the y label
    axis = _Axis(
        nice_ticks(min(values), max(values), whole=whole),
        top=axis_top,
        bottom=height - PAD - TEXT_SIZE - 8,
    )
    left = PAD + _tick_room(axis.ticks, fmt)
    label_w = _text_width("30 Dec", TEXT_SIZE)
    right = width - PAD - label_w / 2
    first, last = days[0][0], days[-1][0]
    span = (last - first).days

    def x(day: date) -> float:
        if span == 0:
            return (left + right) / 2
        return left + (right - left) * (day - first).days / span

    body = [_heading(title)]
    body.append(
        _el(
            "text",
            y_label,
            x=PAD,
            y=PAD + TITLE_SIZE + 6 + SMALL_SIZE,
            font_size=SMALL_SIZE,
            fill="currentColor",
            fill_opacity="0.75",
            class_="y-label",
        )
    )
    body += _grid(axis, fmt, left, right)

    # Day labels every Nth day, counted back from the last, as many as fit.
    fit = max(1, int((right - left + label_w) // (label_w * 1.5 + 10)))
    every = max(1, math.ceil((span + 1) / fit))
    labels = []
    offset = span
    while offset >= 0:
        day = date.fromordinal(first.toordinal() + offset)
        labels.append(
            _el(
                "text",
                _day(day),
                x=x(day),
                y=height - PAD,
                text_anchor="middle",
                fill="currentColor",
                class_="x-label",
            )
        )
        offset -= every
    body.append(_wrap("g", reversed(labels), class_="x-labels"))

    # The line, broken where a day has no data (None, or a day missing from the list).
    runs: list[list[tuple[date, Decimal]]] = []
    previous: date | None = None
    for day, value in days:
        if value is None:
            previous = None
            continue
        if previous is None or (day - previous).days != 1:
            runs.append([])
        runs[-1].append((day, _decimal(value)))
        previous = day
    lines = [
        _el(
            "polyline",
            points=" ".join(f"{_n(x(d))},{_n(axis.y(v))}" for d, v in run),
            fill="none",
            stroke=INK,
            stroke_width="2",
            stroke_linejoin="round",
            stroke_linecap="round",
            class_="series",
        )
        for run in runs
        if len(run) > 1
    ]
    radius = 3.0 if span < 45 else 2.0
    dots = [
        _wrap(
            "circle",
            [_el("title", f"{_long_day(d)}: {fmt.value(v)}")],
            cx=x(d),
            cy=axis.y(v),
            r=radius,
            fill=INK,
            class_="point",
        )
        for d, v in known
    ]
    body.append(_wrap("g", lines + dots, class_="data"))

    high_day, high = max(known, key=lambda point: point[1])
    missing = span + 1 - len(known)
    desc = (
        f"{y_label} each day from {_long_day(first)} to {_long_day(last)}; "
        f"the highest was {fmt.value(high)} on {_long_day(high_day)}"
    )
    if missing:
        desc += f"; no data on {missing} day{'s' if missing != 1 else ''}"
    return _svg(width, height, title, desc + ".", "line", body)


# The bar chart


def _fit(text: str, room: float, size: float) -> str:
    """``text``, cut with an ellipsis where it is wider than ``room``."""
    if _text_width(text, size) <= room:
        return text
    cut = text
    while cut and _text_width(cut + "…", size) > room:
        cut = cut[:-1]
    while cut and unicodedata.category(cut[-1]) in ("Mn", "Mc"):
        cut = cut[:-1]  # never leave a vowel sign without its letter
    return cut + "…" if cut else ""


def bar_chart(
    bars: Sequence[tuple[str, Number]],
    *,
    title: str,
    money: bool = False,
    percent: bool = False,
    highlight: set[str] | None = None,
    width: int = 640,
    height: int = 200,
) -> Markup:
    """One bar a label, its value written above it (below, when negative); the bars whose
    labels are in ``highlight`` drawn darker and hatched.
    """
    if money and percent:
        raise ValueError("a bar chart shows money or a percentage, not both")
    if not bars:
        return _empty(width, height, title, "bar")
    marked = highlight or set()
    fmt = _Format(money=money, percent=percent)
    values = [_decimal(value) for _, value in bars]
    whole = money or all(isinstance(v, int) for _, v in bars)
    ticks = nice_ticks(min(values), max(values), whole=whole)
    left = PAD + _tick_room(ticks, fmt)
    right = width - PAD
    band = (right - left) / len(bars)
    bar_w = min(band * 0.7, 64.0)

    # The values' text: as large as fits the band, else turned upright.
    texts = [fmt.value(v) for v in values]
    widest = max(_text_width(t, SMALL_SIZE) for t in texts)
    value_size = SMALL_SIZE
    if widest > band - 2:
        value_size = max(MIN_VALUE_SIZE, SMALL_SIZE * (band - 2) / widest)
    upright = max(_text_width(t, value_size) for t in texts) > band - 2
    value_room = max(_text_width(t, value_size) for t in texts) + 6 if upright else value_size + 4
    axis = _Axis(
        ticks,
        top=PAD + TITLE_SIZE + 6 + value_room,
        bottom=height - PAD - TEXT_SIZE - 8,
    )
    if ticks[0] < 0:  # room for the values written below negative bars
        axis = _Axis(ticks, top=axis.top, bottom=axis.bottom - value_room)

    # Labels: every one if they fit, else every Nth (many bars, such as hours), else cut.
    label_room = band - 4
    label_texts = [label for label, _ in bars]
    show_every = 1
    if max(_text_width(t, TEXT_SIZE) for t in label_texts) > label_room and len(bars) > 12:
        widest_label = max(_text_width(t, TEXT_SIZE) for t in label_texts)
        show_every = math.ceil((widest_label + 8) / band)
    else:
        label_texts = [_fit(t, label_room, TEXT_SIZE) for t in label_texts]

    digest = hashlib.sha1(
        "\x1f".join([title, *(label for label, _ in bars)]).encode(), usedforsecurity=False
    ).hexdigest()[:10]
    hatch = f"chart-hatch-{digest}"
    body = [
        _wrap(
            "defs",
            [
                _wrap(
                    "pattern",
                    [
                        _el("rect", width=6, height=6, fill=MARK),
                        _el("line", x1=0, y1=0, x2=0, y2=6, stroke="#ffffff", stroke_width="2.5"),
                    ],
                    id=hatch,
                    width=6,
                    height=6,
                    patternUnits="userSpaceOnUse",
                    patternTransform="rotate(45)",
                )
            ],
        ),
        _heading(title),
    ]
    body += _grid(axis, fmt, left, right)
    zero = axis.y(Decimal(0))
    drawn = []
    for i, ((label, _), value, text) in enumerate(zip(bars, values, texts, strict=True)):
        centre = left + band * (i + 0.5)
        end = axis.y(value)
        top, bottom = min(end, zero), max(end, zero)
        strong = label in marked
        tip = f"{label}: {text}" + (" (highlighted)" if strong else "")
        shape = _wrap(
            "rect",
            [_el("title", tip)],
            x=centre - bar_w / 2,
            y=top,
            width=bar_w,
            height=max(bottom - top, 0.0),
            fill=f"url(#{hatch})" if strong else INK,
            stroke=MARK if strong else None,
            stroke_width="1.5" if strong else None,
            class_="bar highlight" if strong else "bar",
        )
        below = value < 0
        if upright:
            anchor_y = bottom + 4 if below else top - 4
            value_el = _el(
                "text",
                text,
                x=centre + value_size * 0.35,
                y=anchor_y,
                transform=f"rotate(-90 {_n(centre + value_size * 0.35)} {_n(anchor_y)})",
                text_anchor="end" if below else "start",
                font_size=value_size,
                font_weight="700" if strong else None,
                fill="currentColor",
                class_="value",
            )
        else:
            value_el = _el(
                "text",
                text,
                x=centre,
                y=bottom + value_size + 2 if below else top - 4,
                text_anchor="middle",
                font_size=value_size,
                font_weight="700" if strong else None,
                fill="currentColor",
                class_="value",
            )
        drawn.append(shape + value_el)
        if i % show_every == 0:
            drawn.append(
                _el(
                    "text",
                    label_texts[i],
                    x=centre,
                    y=height - PAD,
                    text_anchor="middle",
                    fill="currentColor",
                    class_="x-label",
                )
            )
    body.append(_wrap("g", drawn, class_="data"))

    high = max(range(len(bars)), key=lambda k: values[k])
    desc = (
        f"{len(bars)} bar{'s' if len(bars) != 1 else ''}; "
        + "; ".join(f"{label}: {text}" for (label, _), text in zip(bars, texts, strict=True))
        + f". Highest: {bars[high][0]}."
    )
    if marked & {label for label, _ in bars}:
        names = ", ".join(label for label, _ in bars if label in marked)
        desc += f" Highlighted: {names}."
    return _svg(width, height, title, desc, "bar", body)
