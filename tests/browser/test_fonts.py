"""Hindi names render as letters, not boxes, in every weight the pages use (issue 10, item 20).

The test machine, like many Linux desktops, has no Devanagari font of its own: only the
Noto faces OPDesk ships can draw it. Two things have to hold for each piece of text:

* the face of the weight the text is set in was loaded by the page itself
  (``document.fonts.check`` before the test asks for any font);
* the text was drawn with it: each Devanagari word is as wide on the page as the same word
  measured in "Noto Sans Devanagari" of that weight (the known-good rendering), and a row of
  different letters in the element's font does not come out as equal boxes (the ``.notdef``
  pattern).

Before the fix ``system-ui`` stood first in the font list, and Chromium took the system's
fallback (no glyphs: boxes) for Devanagari in headings and links instead of the Noto faces
further down the list, although those faces were loaded.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import open_page, shot, staff_sign_in
from tests.factories import (
    book,
    cancel,
    clinic_with_slots,
    join,
    make_tenant,
    make_user,
    patients,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PROBE = "अमित शर्मा"
# Different letters, different widths in a real font; all alike when drawn as .notdef boxes.
LETTERS = "कखगघचछजझटठ"

# Kinds of element that carry their own weight (Pico: headings 700, table headers 600,
# <strong> "bolder", buttons 400), put on the page with Hindi text and the page's own CSS.
PROBES_HTML = f"""<section id="deva-probe">
  <h2>{PROBE}</h2>
  <table><thead><tr><th>{PROBE}</th></tr></thead>
  <tbody><tr><td><strong>{PROBE}</strong> {PROBE}</td></tr></tbody></table>
  <button type="button">{PROBE}</button>
</section>"""

MEASURE = """async (probes) => {
  const settle = async () => {
    document.body.offsetWidth;  // lay out, so the faces the text needs start loading
    await document.fonts.ready;
    await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
    await document.fonts.ready;
  };
  if (probes) document.querySelector('main').insertAdjacentHTML('beforeend', probes);
  await settle();

  const words = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    if (!element.getClientRects().length) continue;  // not shown
    const style = getComputedStyle(element);
    for (const match of node.data.matchAll(/[\\u0900-\\u097F]+/g)) {
      if (match[0].length < 2) continue;
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const font = `${style.fontWeight} ${style.fontSize} "Noto Sans Devanagari"`;
      words.push({
        element, word: match[0], font,
        where: element.tagName.toLowerCase() + (element.className ? '.' + element.className : ''),
        weight: style.fontWeight,
        onPage: range.getBoundingClientRect().width,
        // Asked before anything below loads a face: did the page load this one itself?
        loaded: document.fonts.check(font, match[0]),
      });
    }
  }

  // The .notdef pattern: a row of different letters in each element's own font.
  for (const w of words) {
    const span = document.createElement('span');
    span.textContent = LETTERS;
    w.element.appendChild(span);
    w.span = span;
  }
  await settle();
  for (const w of words) {
    const text = w.span.firstChild;
    const widths = [];
    for (let i = 0; i < text.length; i++) {
      const range = document.createRange();
      range.setStart(text, i);
      range.setEnd(text, i + 1);
      widths.push(Math.round(range.getBoundingClientRect().width * 100) / 100);
    }
    w.letterWidths = widths;
    w.span.remove();
  }

  // The known-good rendering: the same word measured in the Noto face of that weight.
  const canvas = document.createElement('canvas').getContext('2d');
  for (const w of words) {
    await document.fonts.load(w.font, w.word);
    canvas.font = w.font;
    w.good = canvas.measureText(w.word).width;
  }
  return words.map(({element, span, ...rest}) => rest);
}""".replace("LETTERS", repr(LETTERS))


def boxes(words: list[dict[str, Any]]) -> list[str]:
    """The words drawn wrongly, each with what went wrong."""
    wrong = []
    for w in words:
        what = f"{w['word']!r} in <{w['where']}> at weight {w['weight']}"
        if not w["loaded"]:
            wrong.append(f"{what}: the page never loaded the Noto face of that weight")
        if abs(w["onPage"] - w["good"]) > 1:
            wrong.append(f"{what}: {w['onPage']:.1f}px wide, Noto draws it {w['good']:.1f}px")
        if len(set(w["letterWidths"])) == 1:
            wrong.append(f"{what}: letters come out as equal boxes {w['letterWidths'][0]}px")
    return wrong


def test_hindi_renders_in_headings_table_headers_rows_and_buttons(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    clinic = make_tenant(db, "अमित क्लिनिक")
    admin = make_user(db, ident, clinic, "admin", name="अमित शर्मा")
    make_user(db, ident, clinic, "doctor", name="डॉ. सुनीता पाटील")
    _, doctor, slots = clinic_with_slots(db, ident, 1, clinic)
    first, second = patients(db, ident, clinic, 2, name={"first": "लक्ष्मी", "last": "अय्यर"})
    booked = book(db, clinic, slots[0], first)
    join(db, clinic, second, doctor.id)
    cancel(db, ident, clinic, booked.id)  # the slot is offered: Book it / Declined buttons

    page, problems = open_page(browser, "desktop")
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")
    # The pages where boxes were seen (their own headings, rows and buttons), each also
    # with a heading, a table header, bold text and a button holding Hindi.
    for path in ("/app", "/admin/users", "/waitlist", "/app"):
        page.goto(live_server + path)
        words = page.evaluate(MEASURE, PROBES_HTML)
        kinds = {w["where"].split(".")[0] for w in words}
        assert {"h1" if path == "/app" else "td", "h2", "th", "strong", "button"} <= kinds, kinds
        assert boxes(words) == [], (path, boxes(words))
        shot(page, "hindi" + path.replace("/", "-") + "-desktop")
    assert problems == [], problems
    page.context.close()
