"""The dashboard's SVG charts (issue 14, item 2) in a real page at 1280 and 390 px.

The reports dashboard that will hold them is built separately; this page is made here from
the charts alone, served from the live server's origin with the pages' own stylesheets and
Content-Security-Policy, so a chart that needed inline styles or script would show up as a
console error. Screenshots: screenshots/report-charts-{desktop,phone}.png.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from opdesk.reports.charts import bar_chart, line_chart
from opdesk.web.middleware import CSP_PAGES
from tests.browser.helpers import open_page, shot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

NOV = date(2026, 11, 1)


def page_html() -> str:
    completed = [
        (NOV + timedelta(days=i), None if i in (6, 13) else 20 + (i * 7) % 67) for i in range(30)
    ]
    net = [
        (NOV + timedelta(days=i), None if i % 17 == 5 else Decimal(30000 + (i * 3917) % 90000))
        for i in range(90)
    ]
    charts = [
        line_chart(completed, title="Appointments completed", y_label="Appointments per day"),
        line_chart(net, title="Net revenue, 90 days", y_label="₹ per day", money=True),
        bar_chart(
            [("Mon", 12.5), ("Tue", 8), ("Wed", 22.25), ("Thu", 5), ("Fri", 9.9), ("Sat", 31)],
            title="No-show rate by weekday",
            percent=True,
            highlight={"Sat"},
        ),
        bar_chart(
            [("नकद", Decimal("45230.50")), ("UPI", Decimal("120000")), ("कार्ड", Decimal(8400))],
            title="Revenue by payment method (भुगतान)",
            money=True,
        ),
        bar_chart([], title="No-show rate by booking channel", percent=True),
    ]
    stylesheets = (
        ["vendor/pico/pico.jade.min.css"]
        + [
            f"vendor/fonts/{script}/{weight}.css"
            for script in ("devanagari", "tamil")
            for weight in (400, 600, 700)
        ]
        + ["app.css"]
    )
    links = "".join(f'<link rel="stylesheet" href="/static/{name}">' for name in stylesheets)
    articles = "".join(f"<article>{chart}</article>" for chart in charts)
    return (
        '<!doctype html><html lang="en-IN" data-theme="light"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>Charts</title>{links}</head><body><main class="container">'
        f"<h1>Reports</h1>{articles}</main></body></html>"
    )


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_charts_fit_the_screen_and_need_no_inline_style_or_script(
    browser: Any, live_server: str, width: str
) -> None:
    page, problems = open_page(browser, width)
    url = f"{live_server}/__report-charts"
    html = page_html()
    page.route(
        url,
        lambda route: route.fulfill(
            status=200,
            content_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": CSP_PAGES},
            body=html,
        ),
    )
    page.goto(url)
    assert page.locator("svg[role=img]").count() == 5
    # Every chart is as wide as its card, and no wider than the screen.
    boxes = page.eval_on_selector_all(
        "article > svg",
        "els => els.map(e => [e.getBoundingClientRect().width, e.parentElement.clientWidth])",
    )
    for svg_width, card_width in boxes:
        assert 0 < svg_width <= card_width
    assert page.locator("svg text.chart-empty").all_text_contents() == ["No data for this period"]
    shot(page, f"report-charts-{width}")
    page.context.close()
    assert problems == []
