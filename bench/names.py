"""A realistic name vocabulary for the search benchmark: thousands of distinct first and
last names, each in Latin letters and in Devanagari, drawn with Zipf-like frequencies.

Names are built from syllables that Indian names are commonly made of; every syllable
has its Latin and Devanagari spelling, so each name exists in both scripts (as a clinic
that registers some patients in English letters and some in Hindi would have them).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

# (Latin, Devanagari) syllables that begin names, and those that end them.
FIRST_HEADS = [
    ("A", "अ"), ("Aa", "आ"), ("Ab", "अब"), ("Ad", "आद"), ("Ak", "अक"), ("Am", "अम"),
    ("An", "अन"), ("Ar", "अर"), ("As", "अस"), ("Bha", "भ"), ("Cha", "च"), ("Da", "द"),
    ("Dee", "दी"), ("Dha", "ध"), ("Ga", "ग"), ("Gee", "गी"), ("Ha", "ह"), ("Hi", "हि"),
    ("I", "इ"), ("Ja", "ज"), ("Jay", "जय"), ("Ka", "क"), ("Kam", "कम"), ("Ki", "कि"),
    ("Ku", "कु"), ("La", "ल"), ("Ma", "म"), ("Mee", "मी"), ("Mo", "मो"), ("Na", "न"),
    ("Ni", "नि"), ("Pa", "प"), ("Pra", "प्र"), ("Pri", "प्रि"), ("Ra", "र"), ("Ri", "रि"),
    ("Ru", "रु"), ("Sa", "स"), ("San", "सं"), ("Sha", "श"), ("Shi", "शि"), ("Shri", "श्री"),
    ("Su", "सु"), ("Ta", "त"), ("Ti", "ति"), ("U", "उ"), ("Va", "व"), ("Vi", "वि"),
    ("Ya", "य"), ("Yo", "यो"),
]  # fmt: skip
FIRST_TAILS = [
    ("mesh", "मेश"), ("resh", "रेश"), ("jay", "जय"), ("nita", "निता"), ("kash", "काश"),
    ("deep", "दीप"), ("vi", "वी"), ("ya", "या"), ("ja", "जा"), ("la", "ला"), ("na", "ना"),
    ("ra", "रा"), ("mit", "मित"), ("run", "रुण"), ("shok", "शोक"), ("nil", "निल"),
    ("nand", "नंद"), ("shree", "श्री"), ("jit", "जीत"), ("vind", "विंद"), ("tin", "तिन"),
    ("hul", "हुल"), ("kesh", "केश"), ("man", "मन"), ("ti", "ती"), ("ni", "नी"), ("shma", "ष्मा"),
    ("rti", "र्ती"), ("nav", "नव"), ("dev", "देव"), ("pak", "पक"), ("vali", "वली"),
    ("mala", "माला"), ("lata", "लता"), ("preet", "प्रीत"), ("sh", "श"), ("rav", "रव"),
    ("than", "थन"), ("ksha", "क्षा"), ("ndra", "न्द्र"), ("shna", "ष्णा"), ("tya", "त्या"),
    ("ndan", "न्दन"), ("yush", "युष"), ("nali", "नाली"),
]  # fmt: skip
LAST_HEADS = [
    ("Pa", "पा"), ("Sha", "श"), ("Ja", "जा"), ("Ku", "कु"), ("De", "दे"), ("Ga", "गा"),
    ("Jo", "जो"), ("Ka", "का"), ("Ma", "मा"), ("Na", "ना"), ("Ra", "रा"), ("Sa", "सा"),
    ("Shi", "शि"), ("Bho", "भो"), ("Cha", "च"), ("Ya", "या"), ("Va", "व"), ("Ti", "ति"),
    ("Go", "गो"), ("Me", "मे"), ("Mi", "मि"), ("Bha", "भ"), ("Sin", "सिं"), ("Ve", "वे"),
    ("Tha", "ठा"), ("Kha", "खा"), ("Ba", "ब"), ("Lo", "लो"), ("Dha", "धा"), ("Ha", "ह"),
    ("Kul", "कुल"), ("Desh", "देश"), ("Ni", "नि"), ("Su", "सु"), ("A", "अ"), ("Dwi", "द्वि"),
    ("Chau", "चौ"), ("Gai", "गाय"), ("Sa", "स"), ("Ru", "रु"),
]  # fmt: skip
LAST_TAILS = [
    ("til", "टील"), ("rma", "र्मा"), ("dhav", "धव"), ("lkarni", "लकर्णी"), ("shpande", "शपांडे"),
    ("ikwad", "इकवाड"), ("shi", "शी"), ("le", "ले"), ("ne", "ने"), ("war", "वार"), ("de", "डे"),
    ("vant", "वंत"), ("nde", "ंदे"), ("sle", "सले"), ("van", "वण"), ("dav", "दव"), ("rma", "र्मा"),
    ("pta", "प्ता"), ("hta", "हता"), ("shra", "श्रा"), ("gh", "घ"), ("kur", "कुर"),
    ("tre", "त्रे"), ("khale", "खले"), ("gade", "गडे"), ("dke", "डके"), ("mbe", "म्बे"),
    ("ik", "इक"), ("ir", "ईर"), ("tkar", "तकर"), ("rkar", "रकर"), ("vale", "वाले"),
    ("nkar", "नकर"), ("bde", "बडे"), ("the", "थे"), ("sal", "सल"), ("dhe", "धे"),
    ("kre", "करे"), ("lve", "ल्वे"), ("wde", "वडे"), ("rat", "रत"), ("dge", "डगे"),
    ("vedi", "वेदी"), ("han", "हान"), ("jpai", "जपेई"), ("ndit", "ंडित"), ("ri", "री"),
    ("shmukh", "शमुख"), ("ngle", "ंगले"), ("ud", "उड"), ("roj", "रोज"), ("bal", "बल"),
    ("ndhi", "ंधी"), ("kre", "क्रे"), ("pat", "पट"), ("lla", "ल्ला"), ("ddy", "ड्डी"), ("iyar", "अय्यर"),
]  # fmt: skip


@dataclass(frozen=True)
class Vocabulary:
    firsts: list[tuple[str, str]]  # (Latin, Devanagari), most common first
    lasts: list[tuple[str, str]]

    def draw(self, rng: random.Random, k: int, devanagari_share: float) -> list[tuple[str, str]]:
        """``k`` (first, last) names, Zipf-like, some written in Devanagari."""
        firsts = rng.choices(self.firsts, cum_weights=_zipf(len(self.firsts)), k=k)
        lasts = rng.choices(self.lasts, cum_weights=_zipf(len(self.lasts)), k=k)
        script = [1 if rng.random() < devanagari_share else 0 for _ in range(k)]
        return [(f[s], last[s]) for f, last, s in zip(firsts, lasts, script, strict=True)]


_ZIPF: dict[int, list[float]] = {}


def _zipf(n: int, exponent: float = 0.9) -> list[float]:
    if n not in _ZIPF:
        _ZIPF[n] = list(itertools.accumulate(1 / (rank + 1) ** exponent for rank in range(n)))
    return _ZIPF[n]


def vocabulary(seed: int = 11) -> Vocabulary:
    """Every head with every tail, distinct by Latin spelling, in a shuffled frequency order."""
    rng = random.Random(seed)

    def combine(
        heads: list[tuple[str, str]], tails: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        names: dict[str, str] = {}
        for (hl, hd), (tl, td) in itertools.product(heads, tails):
            names.setdefault(hl + tl, hd + td)
        pairs = list(names.items())
        rng.shuffle(pairs)
        return pairs

    return Vocabulary(combine(FIRST_HEADS, FIRST_TAILS), combine(LAST_HEADS, LAST_TAILS))
