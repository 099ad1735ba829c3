"""Scan & Share matching: ABHA first, then mobile + year + gender + a like name; never a guess.

No database: nothing here takes a fixture from tests/conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opdesk.abdm import messages
from opdesk.abdm.matching import (
    Candidate,
    Verdict,
    best_match,
    mobile_e164,
    name_similarity,
    rank,
    score,
)


@dataclass(frozen=True)
class Profile:
    name: str = "अमित शर्मा"
    gender: str = "M"
    year_of_birth: int = 1988
    mobile: str | None = "9876543210"
    abha_number: str | None = None


AMIT = Candidate(
    patient_id="p-amit",
    first_name="Amit",
    last_name="Sharma",
    phone="+919876543210",
    year_of_birth=1988,
    gender="male",
)


# --- mobile_e164 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "9876543210",
        "+919876543210",
        "919876543210",
        "09876543210",
        "+91 98765 43210",
        "+91-98765-43210",
        " 98765-43210 ",
        "(+91) 98765.43210",
    ],
)
def test_every_way_abdm_writes_a_mobile_gives_one_e164(raw: str) -> None:
    assert mobile_e164(raw) == "+919876543210"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "98765*****",  # masked, as discovery's unverified identifiers send it
        "+9198765*****",
        "5876543210",  # Indian mobiles start 6-9
        "987654321",
        "98765432100",
        "+19876543210",
        "+9209876543210",
        "0091987654321",
        "९८७६५४३२१०",  # Devanagari digits
    ],
)
def test_what_is_not_an_indian_mobile_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="mobile"):
        mobile_e164(raw)


mobiles = st.builds(
    lambda prefix, first, rest, sep: prefix + sep.join([first + rest[:4], rest[4:]]),
    st.sampled_from(["", "+91", "91", "0", "+91 ", "+91-"]),
    st.sampled_from("6789"),
    st.text("0123456789", min_size=9, max_size=9),
    st.sampled_from(["", " ", "-"]),
)


@given(mobiles)
def test_mobile_e164_is_idempotent_on_its_output(raw: str) -> None:
    once = mobile_e164(raw)
    assert mobile_e164(once) == once
    assert once.startswith("+91")
    assert len(once) == 13


@given(st.text(max_size=20))
def test_mobile_e164_accepts_or_refuses_and_then_is_stable(raw: str) -> None:
    try:
        once = mobile_e164(raw)
    except ValueError:
        return
    assert mobile_e164(once) == once


# --- the verdict ------------------------------------------------------------------------------


def test_devanagari_profile_matches_the_latin_record() -> None:
    match = score(AMIT, Profile())
    assert match.verdict is Verdict.LIKELY
    assert match.name_similarity == 1.0
    assert "mobile number matches" in match.reasons


def test_latin_profile_matches_a_devanagari_record() -> None:
    record = replace(AMIT, first_name="अमित", last_name="शर्मा")
    assert score(record, Profile(name="Amit Sharma")).verdict is Verdict.LIKELY


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("Amit Sharma", "Amit Kumar Sharma"),  # a middle name on one side only
        ("Sharma Amit", "Amit Sharma"),  # surname first
        ("Amit Jadhav", "Amit Jadav"),  # one spelling, two ways
        ("A. Sharma", "Amit Sharma"),  # an initial
        ("Lakshmi Devi", "लक्ष्मी देवी"),
        ("Suresh Reddy", "सुरेश रेड्डी"),
    ],
)
def test_alike_names(ours: str, theirs: str) -> None:
    first, _, last = ours.partition(" ")
    record = replace(AMIT, first_name=first, last_name=last)
    assert score(record, Profile(name=theirs)).verdict is Verdict.LIKELY


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("Rohan Sharma", "Rohit Sharma"),  # siblings: one surname, another first name
        ("Sita Verma", "Gita Verma"),
        ("Sneha Gupta", "नेहा गुप्ता"),  # close in sound, another person
        ("Amit", "Sumit Sharma"),
        ("Ramesh Patil", "Suresh Patil"),
    ],
)
def test_unlike_names_never_match(ours: str, theirs: str) -> None:
    first, _, last = ours.partition(" ")
    record = replace(AMIT, first_name=first, last_name=last)
    match = score(record, Profile(name=theirs))
    assert match.verdict is Verdict.NONE
    assert any("names differ" in reason for reason in match.reasons)


def test_abha_number_makes_it_certain_whatever_else_differs() -> None:
    record = replace(AMIT, abha_number="91-7507-6821-7770", phone=None, year_of_birth=None)
    profile = Profile(name="Abdul Kalam", abha_number="91750768217770", mobile=None)
    match = score(record, profile)
    assert match.verdict is Verdict.CERTAIN
    assert match.reasons == ("ABHA number matches",)


def test_a_different_abha_number_on_file_is_someone_else() -> None:
    record = replace(AMIT, abha_number="91750768217771")
    match = score(record, Profile(abha_number="91750768217770"))
    assert match.verdict is Verdict.NONE
    assert match.reasons == ("a different ABHA number is on file",)


def test_abha_number_on_one_side_only_falls_back_to_the_other_facts() -> None:
    assert score(AMIT, Profile(abha_number="91750768217770")).verdict is Verdict.LIKELY


@pytest.mark.parametrize(
    "change",
    [
        {"year_of_birth": 1989},
        {"year_of_birth": None},
        {"gender": "female"},
        {"gender": "undisclosed"},
        {"gender": None},
        {"phone": "+919876543211"},
        {"phone": None},
    ],
)
def test_a_different_or_unknown_fact_never_matches(change: dict[str, object]) -> None:
    record = replace(AMIT, **change)  # type: ignore[arg-type]
    assert score(record, Profile()).verdict is Verdict.NONE


@pytest.mark.parametrize("gender", ["D", "U"])
def test_an_undisclosed_profile_gender_never_agrees(gender: str) -> None:
    record = replace(AMIT, gender=gender)
    assert score(record, Profile(gender=gender)).verdict is Verdict.NONE


def test_a_masked_or_missing_profile_mobile_never_matches() -> None:
    assert score(AMIT, Profile(mobile="98765*****")).verdict is Verdict.NONE
    assert score(AMIT, Profile(mobile=None)).verdict is Verdict.NONE


def test_abdm_letters_and_opdesk_words_agree_on_gender() -> None:
    assert score(replace(AMIT, gender="M"), Profile(gender="M")).verdict is Verdict.LIKELY
    other = replace(AMIT, gender="other")
    assert score(other, Profile(gender="T")).verdict is Verdict.LIKELY


# --- best match -------------------------------------------------------------------------------


def test_the_one_likely_patient_among_the_family_on_one_mobile() -> None:
    father = replace(AMIT, patient_id="p-father", first_name="Rakesh", year_of_birth=1960)
    mother = replace(AMIT, patient_id="p-mother", first_name="Sunita", gender="female")
    sister = replace(AMIT, patient_id="p-sister", first_name="Priya", gender="female")
    assert best_match([father, mother, AMIT, sister], Profile()) == AMIT


def test_two_equally_likely_candidates_give_none() -> None:
    duplicate = replace(AMIT, patient_id="p-amit-again")
    assert best_match([AMIT, duplicate], Profile()) is None


def test_twins_with_an_initial_give_none() -> None:
    twin = replace(AMIT, patient_id="p-anil", first_name="Anil")
    profile = Profile(name="A. Sharma")
    assert [m.verdict for m in rank([AMIT, twin], profile)] == [Verdict.LIKELY] * 2
    assert best_match([AMIT, twin], profile) is None


def test_certain_beats_likely() -> None:
    on_file = replace(AMIT, patient_id="p-abha", abha_number="91750768217770", phone=None)
    assert best_match([AMIT, on_file], Profile(abha_number="91750768217770")) == on_file


def test_two_records_with_one_abha_number_give_none() -> None:
    first = replace(AMIT, abha_number="91750768217770")
    second = replace(AMIT, patient_id="p-2", abha_number="91750768217770")
    assert best_match([first, second], Profile(abha_number="91750768217770")) is None


def test_no_candidates_or_no_match_give_none() -> None:
    assert best_match([], Profile()) is None
    assert best_match([replace(AMIT, year_of_birth=1990)], Profile()) is None


def test_rank_lists_certain_then_likely_then_none() -> None:
    certain = replace(AMIT, patient_id="c", abha_number="91750768217770")
    none = replace(AMIT, patient_id="n", gender="female")
    profile = Profile(abha_number="91750768217770")
    likely = replace(AMIT, patient_id="l")
    assert [m.candidate.patient_id for m in rank([none, likely, certain], profile)] == [
        "c",
        "l",
        "n",
    ]


def test_a_parsed_share_profile_is_a_profile() -> None:
    # The documented Scan & Share body (see test_messages.py), as a parsed ShareProfile.
    from tests.abdm.test_messages import SHARE

    profile = messages.parse_share_profile(SHARE)
    kalam = Candidate(
        patient_id="p-kalam",
        first_name="Abdul",
        last_name="Kalam",
        phone="+919876543210",
        year_of_birth=1990,
        gender="male",
    )
    assert score(kalam, profile).verdict is Verdict.LIKELY
    with_abha = replace(kalam, abha_number="91-7507-6821-7770", phone=None)
    assert score(with_abha, profile).verdict is Verdict.CERTAIN


def test_name_similarity_is_symmetric_and_bounded() -> None:
    pairs = [("Amit Sharma", "अमित शर्मा"), ("Rohan", "Rohit Sharma"), ("", "Amit")]
    for a, b in pairs:
        assert name_similarity(a, b) == name_similarity(b, a)
        assert 0.0 <= name_similarity(a, b) <= 1.0
