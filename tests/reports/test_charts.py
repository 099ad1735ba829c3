"""The dashboard's charts (issue 14, item 2): SVG drawn on the server, read back here as
XML: what is drawn (points, gaps, bars), the y axis' ticks, how money and percentages are
written, that nothing a caller gives can become markup, and the empty state.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from jinja2 import Environment
from markupsafe import Markup

from opdesk.reports.charts import EMPTY, TEXT_SIZE, _text_width, bar_chart, line_chart

NS = "{http://www.w3.org/2000/svg}"
NOV = date(2026, 11, 1)


def parse(chart: Markup) -> ET.Element:
    assert isinstance(chart, Markup)
    # Our own SVG; fromstring raises on anything that is not well-formed XML.
    return ET.fromstring(str(chart))  # noqa: S314


def of_class(root: ET.Element, tag: str, name: str) -> list[ET.Element]:
    return [el for el in root.iter(NS + tag) if name in (el.get("class") or "").split()]


def texts(root: ET.Element, name: str) -> list[str]:
    return [el.text or "" for el in of_class(root, "text", name)]


def days(values: list[int | None]) -> list[tuple[date, int | None]]:
    return [(NOV + timedelta(days=i), value) for i, value in enumerate(values)]


def test_a_line_chart_has_a_point_for_each_day_with_data_and_a_gap_for_a_day_without() -> None:
    root = parse(
        line_chart(
            days([5, 8, 13, 21, None, 34, 55, 87, 40, 12]),
            title="Appointments completed",
            y_label="Appointments per day",
        )
    )
    assert len(of_class(root, "circle", "point")) == 9
    lines = of_class(root, "polyline", "series")
    assert [len((line.get("points") or "").split()) for line in lines] == [4, 5]
    # The gap is where 5 November would be: the first line ends before the second starts.
    first_end = float((lines[0].get("points") or "").split()[-1].split(",")[0])
    second_start = float((lines[1].get("points") or "").split()[0].split(",")[0])
    assert second_start - first_end > 1.5 * (first_end / 3)


def test_a_day_missing_from_the_list_is_a_gap_too_and_a_lone_day_is_a_dot() -> None:
    points = [(NOV, 3), (NOV + timedelta(days=1), 4), (NOV + timedelta(days=3), 6)]
    root = parse(line_chart(points, title="Visits", y_label="Visits"))
    assert len(of_class(root, "polyline", "series")) == 1
    assert len(of_class(root, "circle", "point")) == 3
    assert "no data on 1 day" in (root.findtext(NS + "desc") or "")


def test_the_y_axis_starts_at_zero_in_nice_steps_past_the_highest_value() -> None:
    root = parse(line_chart(days([10, 87, 40]), title="Completed", y_label="Appointments"))
    assert texts(root, "tick") == ["0", "20", "40", "60", "80", "100"]

    small = parse(line_chart(days([1, 0, 1]), title="Completed", y_label="Appointments"))
    assert texts(small, "tick") == ["0", "1", "2"]  # counts never get 0.5 steps

    rates = parse(bar_chart([("Mon", 0.3), ("Tue", 0.7)], title="Rate", percent=True))
    assert texts(rates, "tick") == ["0%", "0.2%", "0.4%", "0.6%", "0.8%"]


def test_money_is_written_in_indian_style_on_the_axis_points_and_bars() -> None:
    net = [Decimal("45230.50"), Decimal("230000"), None, Decimal("-12000")]
    root = parse(
        line_chart(
            [(NOV + timedelta(days=i), v) for i, v in enumerate(net)],
            title="Net revenue",
            y_label="₹ per day",
            money=True,
        )
    )
    assert texts(root, "tick") == [
        "\N{MINUS SIGN}₹1,00,000",  # a day whose refunds exceed its takings
        "₹0",
        "₹1,00,000",
        "₹2,00,000",
        "₹3,00,000",
    ]
    tips = [el.findtext(NS + "title") for el in of_class(root, "circle", "point")]
    assert tips == [
        "1 Nov 2026: ₹45,230.50",
        "2 Nov 2026: ₹2,30,000",
        "4 Nov 2026: \N{MINUS SIGN}₹12,000",
    ]

    bars = parse(
        bar_chart(
            [("UPI", Decimal("120000")), ("Cash", Decimal("8400.5"))], title="By method", money=True
        )
    )
    assert texts(bars, "value") == ["₹1,20,000", "₹8,400.50"]


def test_percentages_are_written_with_a_percent_sign_to_one_decimal() -> None:
    root = parse(
        bar_chart(
            [("Mon", 12.5), ("Tue", Decimal("8")), ("Wed", 22.25), ("Sun", 0)],
            title="No-show rate by weekday",
            percent=True,
        )
    )
    assert len(of_class(root, "rect", "bar")) == 4
    assert texts(root, "value") == ["12.5%", "8%", "22.3%", "0%"]
    assert texts(root, "tick") == ["0%", "5%", "10%", "15%", "20%", "25%"]
    assert texts(root, "x-label") == ["Mon", "Tue", "Wed", "Sun"]


def test_a_taller_bar_stands_higher_and_a_highlighted_one_is_hatched() -> None:
    root = parse(
        bar_chart(
            [("Fri", 9.9), ("Sat", 31), ("सोमवार", 5)],
            title="No-show rate",
            percent=True,
            highlight={"Sat"},
        )
    )
    bars = of_class(root, "rect", "bar")
    heights = [float(bar.get("height") or 0) for bar in bars]
    assert heights[1] > heights[0] > heights[2] > 0
    marked = of_class(root, "rect", "highlight")
    assert [bar.findtext(NS + "title") for bar in marked] == ["Sat: 31% (highlighted)"]
    fill = marked[0].get("fill") or ""
    pattern_ids = [p.get("id") for p in root.iter(NS + "pattern")]
    assert fill == f"url(#{pattern_ids[0]})"
    assert all(bar.get("fill") != fill for bar in bars if bar not in marked)
    assert "सोमवार" in texts(root, "x-label")


def test_labels_and_titles_are_escaped_and_the_chart_has_no_script_or_style() -> None:
    evil = '<script>alert("x")</script>'
    root = parse(bar_chart([(evil, 3), ("Walk-in", 7)], title=f"Channel {evil}"))
    assert evil in texts(root, "x-label")
    assert root.findtext(NS + "title") == f"Channel {evil}"
    assert root.get("aria-label") == f"Channel {evil}"
    line = parse(line_chart(days([1, 2]), title=evil, y_label=evil))
    for chart in (root, line):
        for el in chart.iter():
            assert el.tag.removeprefix(NS) not in ("script", "style", "foreignObject")
            assert not [name for name in el.attrib if name.startswith("on") or name == "style"]


def test_a_chart_is_an_accessible_image_that_scales_to_its_container() -> None:
    root = parse(line_chart(days([4, 9, None, 2]), title="Visits", y_label="Visits per day"))
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Visits"
    assert root.get("viewBox") == "0 0 640 200"
    assert root.get("width") == "100%"
    assert root.get("height") is None
    assert root[0].tag == NS + "title" and root[0].text == "Visits"
    desc = root.findtext(NS + "desc") or ""
    assert "Visits per day each day from 1 Nov 2026 to 4 Nov 2026" in desc
    assert "the highest was 9 on 2 Nov 2026" in desc
    visible = of_class(root, "text", "chart-title")
    assert [el.text for el in visible] == ["Visits"]


def test_it_renders_inline_in_a_page_without_being_escaped_again() -> None:
    chart = bar_chart([("A & B", 1)], title="x")
    page = Environment(autoescape=True).from_string("<p>{{ chart }}</p>").render(chart=chart)
    assert page.startswith("<p><svg ")
    assert "A &amp; B" in page and "&amp;amp;" not in page


@pytest.mark.parametrize("span", [7, 30, 90])
def test_day_labels_do_not_overlap_and_the_last_day_is_named(span: int) -> None:
    points = [(NOV + timedelta(days=i), i % 13) for i in range(span)]
    root = parse(line_chart(points, title="Trend", y_label="Visits"))
    labels = of_class(root, "text", "x-label")
    xs = [float(el.get("x") or 0) for el in labels]
    assert labels[-1].text == {7: "7 Nov", 30: "30 Nov", 90: "29 Jan"}[span]
    assert 2 <= len(labels) <= 8
    for (a, b), (left, right) in zip(pairwise(xs), pairwise(labels), strict=True):
        room = (
            _text_width(left.text or "", TEXT_SIZE) + _text_width(right.text or "", TEXT_SIZE)
        ) / 2
        assert b - a > room, f"{left.text} and {right.text} overlap"
    steps = [b - a for a, b in pairwise(xs)]
    assert max(steps) - min(steps) < 0.2  # every Nth day, evenly


def test_many_bars_name_every_nth_and_a_long_label_is_cut_with_its_whole_name_kept() -> None:
    hours = parse(bar_chart([(f"{h}:00 to {h + 1}:00", h) for h in range(24)], title="By hour"))
    assert len(of_class(hours, "rect", "bar")) == 24
    assert 2 <= len(texts(hours, "x-label")) < 24

    root = parse(
        bar_chart(
            [(f"Method {i}", i + 1) for i in range(8)] + [("Bank transfer (NEFT / RTGS)", 2)],
            title="By method",
        )
    )
    label = texts(root, "x-label")[-1]
    assert label.endswith("…") and "Bank transfer (NEFT / RTGS)".startswith(label[:-1])
    assert of_class(root, "rect", "bar")[-1].findtext(NS + "title") == (
        "Bank transfer (NEFT / RTGS): 2"
    )


@pytest.mark.parametrize(
    "chart",
    [
        line_chart([], title="Visits", y_label="Visits"),
        line_chart(days([None, None, None]), title="Visits", y_label="Visits"),
        bar_chart([], title="Visits", percent=True),
    ],
)
def test_no_data_draws_a_frame_that_says_so(chart: Markup) -> None:
    root = parse(chart)
    assert texts(root, "chart-empty") == [EMPTY]
    assert texts(root, "chart-title") == ["Visits"]
    assert not of_class(root, "circle", "point") and not of_class(root, "rect", "bar")
    assert root.get("role") == "img"


def test_a_value_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        bar_chart([("Mon", float("nan"))], title="Rate", percent=True)
    with pytest.raises(ValueError, match="money or a percentage"):
        bar_chart([("Mon", 1)], title="Rate", percent=True, money=True)
