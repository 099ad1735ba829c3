"""Sound keys: one spelling of a name for Latin and Indic scripts alike.

"Amit Sharma" and "अमित शर्मा" both key as ``amit srm``; so do "Jadhav", "Jadav" and
"जाधव" (``jdo``). The key is deliberately coarse: it is only used to find a name typed in
one script among names written in another, never to decide that two people are the same.

How a word becomes a key:

1. Indic letters are read as Devanagari (the other Brahmic blocks of Unicode, Bengali to
   Malayalam, keep Devanagari's layout, so ``char - block + 0x900`` is the same letter)
   and written in plain Latin letters, aspirates folded (ख → k, भ → b), long and short
   vowels alike (ई → i), every consonant carrying its inherent ``a`` unless a virama or
   a vowel sign follows.
2. Latin letters lose their accents and case, and the usual ways of romanising Indian
   names are folded: ``ee``/``i``, ``oo``/``u``, an ``h`` after a consonant (sh, th, dh,
   bh ...), ``w``/``v``, ``z``/``j``, ``f``/``p``, ``q``/``k``, ``x``/``ks``.
3. Both then go through the same folding: doubled letters count once, and every ``a``
   but a first letter is dropped. Hindi drops most inherent vowels in speech ("कमला" is
   said "Kamla" and written "Kamala" as often), so the key keeps none of them. A final
   ``y`` after a consonant is ``i`` (Reddy, रेड्डी); a final ``v`` after one is ``o``
   (Rao, राव; Yadav, यादव).

Each key is stored with the script it was written in (``l:`` Latin, ``i:`` Indic), so a
search in one script looks only among the names in the other: the same-script prefix and
similar-spelling searches already cover the rest.
"""

from __future__ import annotations

import re
import unicodedata

LATIN = "l"
INDIC = "i"

_DEVANAGARI = 0x0900
_INDIC_BLOCKS = range(0x0900, 0x0D80)  # Devanagari .. Malayalam, 128 code points each
_VIRAMA = 0x4D
_NUKTA = 0x3C
_ANUSVARA = 0x02
_CHANDRABINDU = 0x01

# Offsets within the block (as in Devanagari) to Latin.
_CONSONANTS = {
    0x15: "k", 0x16: "k", 0x17: "g", 0x18: "g", 0x19: "n",
    0x1A: "c", 0x1B: "c", 0x1C: "j", 0x1D: "j", 0x1E: "n",
    0x1F: "t", 0x20: "t", 0x21: "d", 0x22: "d", 0x23: "n",
    0x24: "t", 0x25: "t", 0x26: "d", 0x27: "d", 0x28: "n", 0x29: "n",
    0x2A: "p", 0x2B: "p", 0x2C: "b", 0x2D: "b", 0x2E: "m",
    0x2F: "y", 0x30: "r", 0x31: "r", 0x32: "l", 0x33: "l", 0x34: "l", 0x35: "v",
    0x36: "s", 0x37: "s", 0x38: "s", 0x39: "h",
    # precomposed nukta forms: क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़
    0x58: "k", 0x59: "k", 0x5A: "g", 0x5B: "j", 0x5C: "r", 0x5D: "r", 0x5E: "p", 0x5F: "y",
}  # fmt: skip
_INDEPENDENT_VOWELS = {
    0x05: "a", 0x06: "a", 0x07: "i", 0x08: "i", 0x09: "u", 0x0A: "u", 0x0B: "ri",
    0x0C: "li", 0x0D: "e", 0x0E: "e", 0x0F: "e", 0x10: "ai", 0x11: "o", 0x12: "o",
    0x13: "o", 0x14: "au", 0x60: "ri", 0x61: "li",
}  # fmt: skip
_VOWEL_SIGNS = {
    0x3E: "a", 0x3F: "i", 0x40: "i", 0x41: "u", 0x42: "u", 0x43: "ri", 0x44: "ri",
    0x45: "e", 0x46: "e", 0x47: "e", 0x48: "ai", 0x49: "o", 0x4A: "o", 0x4B: "o",
    0x4C: "au", 0x62: "li", 0x63: "li",
    0x57: "au",  # Tamil, Malayalam: the length mark that closes ஔ / ൌ
}  # fmt: skip
# Malayalam chillu letters (a consonant with no vowel) and Bengali khanda ta.
_STANDALONE = {0x0D7A: "n", 0x0D7B: "n", 0x0D7C: "r", 0x0D7D: "l", 0x0D7E: "l", 0x0D7F: "k"}
_STANDALONE[0x09CE] = "t"
_LABIALS = frozenset("pbm")
_NUKTA_SHIFT = {"d": "r", "j": "j", "k": "k", "g": "g", "p": "p"}  # ड़ is r; the rest stay

_LATIN_FOLDS = (
    (re.compile(r"x"), "ks"),
    (re.compile(r"q"), "k"),
    (re.compile(r"z"), "j"),
    (re.compile(r"f"), "p"),
    (re.compile(r"w"), "v"),
    (re.compile(r"ee"), "i"),
    (re.compile(r"oo"), "u"),
)
_H_AFTER_CONSONANT = re.compile(r"(?<=[bcdgjkpst])h")  # the aspirates; r+h is two syllables
_DOUBLED = re.compile(r"(.)\1+")
_FINAL_Y = re.compile(r"(?<=[^aeiou])y$")
_FINAL_V = re.compile(r"(?<=[^aeiou])v$")
_NOT_LETTER = re.compile(r"[^a-z]")


def script_of(text: str) -> str | None:
    """``l`` when the first letter is Latin, ``i`` when it is Indic, None without letters."""
    for char in text:
        if 0x0900 <= ord(char) < 0x0D80:
            return INDIC
        if char.isalpha():
            return LATIN
    return None


def _indic_to_latin(word: str) -> str:
    """An Indic word in plain Latin letters (step 1 of the module docstring)."""
    out: list[str] = []
    pending_a = False  # the last consonant's inherent vowel, not yet written
    chars = [ord(c) for c in word]
    for i, code in enumerate(chars):
        if code in _STANDALONE:
            if pending_a:
                out.append("a")
            out.append(_STANDALONE[code])
            pending_a = False
            continue
        if code not in _INDIC_BLOCKS:
            continue
        offset = (code - _DEVANAGARI) % 0x80
        if offset in _CONSONANTS:
            if pending_a:
                out.append("a")
            out.append(_CONSONANTS[offset])
            pending_a = True
        elif offset == _NUKTA:
            if out and out[-1] in _NUKTA_SHIFT:
                out[-1] = _NUKTA_SHIFT[out[-1]]
        elif offset == _VIRAMA:
            pending_a = False
        elif offset in _VOWEL_SIGNS:
            out.append(_VOWEL_SIGNS[offset])
            pending_a = False
        elif offset in _INDEPENDENT_VOWELS:
            if pending_a:
                out.append("a")
            out.append(_INDEPENDENT_VOWELS[offset])
            pending_a = False
        elif offset in (_ANUSVARA, _CHANDRABINDU):
            if pending_a:
                out.append("a")
            pending_a = False
            after = _next_consonant(chars, i + 1)
            out.append("m" if after in _LABIALS else "ng" if after == "h" else "n")
        elif offset == 0x70 and code == 0x0A70:  # Gurmukhi tippi: a nasal like anusvara
            out.append("n")
    if pending_a:
        out.append("a")
    return "".join(out)


def _next_consonant(chars: list[int], start: int) -> str | None:
    if start < len(chars) and chars[start] in _INDIC_BLOCKS:
        return _CONSONANTS.get((chars[start] - _DEVANAGARI) % 0x80)
    return None


def _fold_latin(word: str) -> str:
    """Accents, case and the common romanisations folded (step 2)."""
    plain = unicodedata.normalize("NFKD", word.lower())
    plain = _NOT_LETTER.sub("", "".join(c for c in plain if not unicodedata.combining(c)))
    for pattern, replacement in _LATIN_FOLDS:
        plain = pattern.sub(replacement, plain)
    return plain


def _fold(latin: str) -> str:
    """What both scripts go through (step 3)."""
    key = _H_AFTER_CONSONANT.sub("", latin)
    key = _DOUBLED.sub(r"\1", key)
    key = key[:1] + key[1:].replace("a", "")
    key = _DOUBLED.sub(r"\1", key)
    key = _FINAL_Y.sub("i", key)
    return _FINAL_V.sub("o", key)


def word_key(word: str) -> str:
    """The sound of one word, without its script: ``"शर्मा"`` and ``"Sharma"`` are ``srm``."""
    if script_of(word) == INDIC:
        return _fold(_fold_latin(_indic_to_latin(word)))
    return _fold(_fold_latin(word))


def words(text: str) -> list[str]:
    """The sound of each word of ``text`` (empty sounds left out)."""
    return [key for key in (word_key(w) for w in text.split()) if key]


def name_key(name: str) -> str:
    """What a name part is stored as: ``"i:amit"`` for ``"अमित"``; ``""`` for no name."""
    script = script_of(name)
    sounds = words(name)
    if script is None or not sounds:
        return ""
    return f"{script}:{' '.join(sounds)}"


def other_script(text: str) -> str | None:
    """Where to look for ``text`` typed in one script: among names in the other."""
    script = script_of(text)
    if script is None:
        return None
    return LATIN if script == INDIC else INDIC


def in_latin_letters(text: str) -> str:
    """``text`` with each Indic word spelled in plain Latin letters ("अमित शर्मा" ->
    "amit sharma"); Latin words are kept as they are. A spelling, not a translation."""
    return " ".join(w if script_of(w) != INDIC else _indic_to_latin(w) for w in text.split())
