"""Small PDFs OPDesk writes itself (signed consent copies), with Devanagari and Tamil.

fpdf2 needs TrueType fonts; the Noto faces are vendored as WOFF2 for the pages, so they
are converted once into ``<data dir>/fonts`` and shaped with HarfBuzz.
"""

from __future__ import annotations

import threading
from pathlib import Path

from fontTools.ttLib import TTFont
from fpdf import FPDF

VENDORED = Path(__file__).resolve().parent.parent / "static" / "vendor" / "fonts"
FACES = (  # (fpdf name, vendored script folder, subset file stem)
    ("noto-latin", "devanagari", "noto-sans-devanagari-latin"),
    ("noto-latin-ext", "devanagari", "noto-sans-devanagari-latin-ext"),
    ("noto-devanagari", "devanagari", "noto-sans-devanagari-devanagari"),
    ("noto-tamil", "tamil", "noto-sans-tamil-tamil"),
)
_lock = threading.Lock()


def _truetype(cache: Path, script: str, stem: str, weight: int) -> Path:
    target = cache / f"{stem}-{weight}.ttf"
    with _lock:
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            font = TTFont(VENDORED / script / "files" / f"{stem}-{weight}-normal.woff2")
            font.flavor = None
            font.save(target)
    return target


def add_faces(pdf: FPDF, cache: Path) -> None:
    """Give ``pdf`` the Noto faces: Latin first, the Indian scripts as fallbacks, with
    text shaping so conjuncts and vowel signs join.

    One weight only: fpdf2 2.8 mixes up glyphs between the bold and regular faces of a
    fallback font when text shaping is on (seen as garbled Latin after a bold title).
    """
    for name, script, stem in FACES:
        pdf.add_font(name, "", str(_truetype(cache, script, stem, 400)))
    pdf.set_fallback_fonts([name for name, _, _ in FACES[1:]])
    pdf.set_text_shaping(True)


def body_font(pdf: FPDF, size: float) -> None:
    """Switch away and back: after a run in a fallback face, fpdf2 2.8 otherwise keeps
    drawing the next Latin run with the size of the last explicit font change.
    """
    pdf.set_font("noto-tamil", "", size + 1)
    pdf.set_font("noto-latin", "", size)


def needs_shaping(texts: list[str]) -> bool:
    """Whether any text is in an Indic script (Devanagari to Malayalam), whose letters
    HarfBuzz must shape. Shaping every cell of a long table costs seconds, and Latin,
    digits and ₹ draw the same without it.
    """
    return any("\u0900" <= ch <= "\u0dff" for text in texts for ch in text)


def document(cache: Path, title: str, paragraphs: list[str], footer: str) -> bytes:
    """A one-column A4 PDF: a title, paragraphs, and a footer line."""
    pdf = FPDF(format="A4")
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    add_faces(pdf, cache)
    pdf.set_font("noto-latin", "", 17)
    pdf.multi_cell(0, 9, title)
    pdf.ln(4)
    for paragraph in paragraphs:
        body_font(pdf, 11)
        pdf.multi_cell(0, 6, paragraph)
        pdf.ln(3)
    pdf.ln(6)
    body_font(pdf, 9)
    pdf.multi_cell(0, 5, footer)
    return bytes(pdf.output())


class NotedPdf(FPDF):
    """A PDF whose every page ends with ``note`` (what the document is, when it was made) and
    "Page n of N" (call ``alias_nb_pages``), in grey."""

    note = ""

    def footer(self) -> None:
        # A page can end inside a table drawn without shaping; a clinic's name in
        # Devanagari needs it here.
        shaping = self.text_shaping
        self.set_text_shaping(True)
        self.set_y(-12)
        body_font(self, 7)
        self.set_text_color(90, 90, 90)
        width = self.w - self.l_margin - self.r_margin
        self.cell(width - 25, 4, self.note)
        body_font(self, 7)  # again: the note may have ended in a fallback face
        self.cell(25, 4, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)
        self.text_shaping = shaping
