"""The demo clinic's consultations: signed visits with notes, vitals, diagnoses,
prescriptions, diet plans and lab orders, written through the clinical services.

Suresh Jadhav, the first demo patient, has a long history with Dr. Anjali Deshmukh:
fifteen signed visits over two years for type 2 diabetes and hypertension (a vitals
trend that improves, prescriptions repeated and changed, a diet plan in three versions he
ticks in the portal, lab orders reported and reviewed, one of them abnormal), and a
sixteenth open today with the vitals the desk took. A few other patients have a short history, and
today's completed appointments have their signed visits.

Past visits are walk-ins lived at the time they happened (the services read the time
from the context's clock, as :mod:`opdesk.scheduling.demo` does for today): no slots
exist in the past to book. Everything is made once; a second ``opdesk demo`` finds it
and writes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from fpdf import FPDF
from sqlalchemy import select, true
from sqlalchemy.orm import Session

from opdesk.clinical import diet, formulary, orders, prescriptions, visits, vitals
from opdesk.clinical.models import DietPlan, FormularyDrug, Order, Prescription, Visit
from opdesk.context import RequestContext
from opdesk.documents.storage import Storage
from opdesk.identity.models import User
from opdesk.identity.service import Identity
from opdesk.patients import service as patient_records
from opdesk.patients.models import Patient
from opdesk.patients.schemas import PatientUpdate
from opdesk.scheduling import lifecycle, waitlist
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile, Slot
from opdesk.tenancy import service as tenants

DOCTOR_EMAIL = "doctor@sunrise-clinic.example"
DESK_EMAIL = "frontdesk@sunrise-clinic.example"
LONG_HISTORY_PHONE = "+919822012345"  # Suresh Jadhav (DEMO_PATIENTS in opdesk.demo)
LONG_HISTORY_DOB = "1971-03-14"
SHORT_HISTORY_PHONES = ("+919890054321", "+917020098765")  # Lakshmi Iyer, अमित शर्मा
REPORT_BYTES = 5 * 1024 * 1024

# --------------------------------------------------------------------------- what is written


@dataclass(frozen=True)
class Med:
    """One prescription line: a formulary drug (generic, strength, form) and how to take it."""

    generic: str
    strength: str
    form: str
    dose: str
    frequency: str
    days: int
    timing: str | None = "after-food"
    instructions: str | None = None
    refills: int = 0


METFORMIN_500 = Med("Metformin", "500 mg", "tablet", "1 tablet", "1-0-1", 30)
METFORMIN_1000 = Med("Metformin", "1000 mg", "tablet", "1 tablet", "1-0-1", 30, refills=2)
AMLODIPINE_5 = Med("Amlodipine", "5 mg", "tablet", "1 tablet", "1-0-0", 30, timing=None)
TELMISARTAN_40 = Med("Telmisartan", "40 mg", "tablet", "1 tablet", "1-0-0", 30, timing=None)
ATORVASTATIN_10 = Med("Atorvastatin", "10 mg", "tablet", "1 tablet", "0-0-1", 30, "bedtime")
GLIMEPIRIDE_1 = Med(
    "Glimepiride",
    "1 mg",
    "tablet",
    "1 tablet",
    "1-0-0",
    30,
    "before-food",
    "Take 15 minutes before breakfast; do not skip the meal after it",
)
PARACETAMOL_650 = Med(
    "Paracetamol", "650 mg", "tablet", "1 tablet", "1-1-1", 3, instructions="Only if fever"
)
CETIRIZINE_10 = Med("Cetirizine", "10 mg", "tablet", "1 tablet", "0-0-1", 5, timing="bedtime")
PANTOPRAZOLE_40 = Med("Pantoprazole", "40 mg", "tablet", "1 tablet", "1-0-0", 14, "before-food")
AMOXICILLIN_500 = Med("Amoxicillin", "500 mg", "capsule", "1 capsule", "1-1-1", 5)
AZITHROMYCIN_500 = Med("Azithromycin", "500 mg", "tablet", "1 tablet", "1-0-0", 3)

REGULAR = (METFORMIN_500, AMLODIPINE_5, ATORVASTATIN_10)
STEPPED_UP = (METFORMIN_1000, AMLODIPINE_5, ATORVASTATIN_10)
WITH_TELMISARTAN = (METFORMIN_1000, AMLODIPINE_5, TELMISARTAN_40, ATORVASTATIN_10)
WITH_GLIMEPIRIDE = (METFORMIN_1000, GLIMEPIRIDE_1, AMLODIPINE_5, TELMISARTAN_40, ATORVASTATIN_10)
REPEAT = "repeat"  # "Repeat last prescription", one click
# What the doctor gives instead when the allergy check flags a medicine.
INSTEAD = {"Amoxicillin": AZITHROMYCIN_500}


@dataclass(frozen=True)
class LabOrder:
    """A lab order, its report (lines of the PDF), and what the doctor wrote on review."""

    tests: tuple[tuple[str, str, str | None], ...]  # (name, LOINC code, panel)
    report: tuple[str, ...]
    abnormal: bool
    review_note: str


@dataclass(frozen=True)
class Seen:
    """One past consultation, as the doctor wrote it."""

    days_ago: int
    at: time
    s: str
    o: str
    a: str
    p: str
    vitals: dict[str, str]
    diagnoses: tuple[tuple[str, str | None], ...]
    rx: tuple[Med, ...] | str | None = None
    # the same day, the doctor changes the issued prescription to this (a new version)
    rx_changed_to: tuple[Med, ...] | None = None
    lab: LabOrder | None = None
    diet: str | None = None  # "new" or "revise"


T2DM = ("E11.9", None)
HTN = ("I10", None)
LIPIDS = ("E78.5", None)

FIRST_PANEL = LabOrder(
    (
        ("HbA1c", "4548-4", "Diabetes panel"),
        ("Fasting blood sugar", "1558-6", "Diabetes panel"),
        ("Lipid profile", "57698-3", None),
        ("Serum creatinine", "2160-0", "Kidney function"),
    ),
    (
        "HbA1c 8.9 % (H) (non-diabetic below 5.7 %)",
        "Fasting blood sugar 168 mg/dL (H) (70 to 100)",
        "Total cholesterol 232 mg/dL (H); LDL 148 mg/dL (H); HDL 38 mg/dL (L); "
        "Triglycerides 210 mg/dL (H)",
        "Serum creatinine 0.9 mg/dL (0.7 to 1.3)",
    ),
    True,
    "HbA1c 8.9 % and LDL 148 mg/dL, well above target. Diabetes confirmed: continue "
    "metformin, add atorvastatin at the next visit; creatinine normal.",
)

SURESH: tuple[Seen, ...] = (
    Seen(
        720,
        time(10, 15),
        "Increased thirst and passing urine often at night for 2 months. Tired by evening. "
        "Father had diabetes. Works in a bank; no exercise.",
        "Alert, not dehydrated. No pedal oedema. Feet: sensation normal.",
        "Newly detected type 2 diabetes mellitus with hypertension, overweight.",
        "Start metformin 500 mg twice daily and amlodipine 5 mg. Fasting bloods and lipids. "
        "Diet plan given; walk 30 minutes daily. Review with reports.",
        {
            "bp-systolic": "152",
            "bp-diastolic": "96",
            "pulse": "88",
            "weight": "84.0",
            "height": "170",
            "blood-sugar-random": "286",
            "spo2": "98",
        },
        (T2DM, HTN),
        rx=(METFORMIN_500, AMLODIPINE_5),
        lab=FIRST_PANEL,
        diet="new",
    ),
    Seen(
        690,
        time(18, 10),
        "Came with reports. Mild loose stools first week of metformin, settled now.",
        "No complaints on examination.",
        "T2DM, HbA1c 8.9 %. Dyslipidaemia (LDL 148). HTN improving.",
        "Add atorvastatin 10 mg at night. Continue metformin and amlodipine. Diet reinforced.",
        {"bp-systolic": "144", "bp-diastolic": "92", "pulse": "84", "weight": "83.4"},
        (T2DM, HTN, LIPIDS),
        rx=REGULAR,
    ),
    Seen(
        630,
        time(10, 40),
        "Feeling better, walking 4 days a week. Skips the evening snack.",
        "Feet normal.",
        "T2DM, HTN on treatment, improving.",
        "Continue the same medicines. Repeat HbA1c after 3 months.",
        {
            "bp-systolic": "142",
            "bp-diastolic": "90",
            "pulse": "82",
            "weight": "83.2",
            "blood-sugar-random": "198",
        },
        (T2DM, HTN),
        rx=REPEAT,
    ),
    Seen(
        570,
        time(11, 5),
        "Fever, sore throat and running nose for 2 days. No breathlessness.",
        "Throat congested, no exudate. Chest clear.",
        "Acute upper respiratory infection, likely viral. Sugars a little up with fever.",
        "Paracetamol if fever, cetirizine at night, warm saline gargles, fluids. "
        "No antibiotic needed. Continue regular medicines.",
        {
            "temperature": "100.8",
            "pulse": "96",
            "spo2": "97",
            "bp-systolic": "138",
            "bp-diastolic": "88",
            "blood-sugar-random": "214",
        },
        (("J06.9", None), T2DM),
        rx=(*REGULAR, PARACETAMOL_650, CETIRIZINE_10),
    ),
    Seen(
        510,
        time(9, 50),
        "No complaints. Fever last time settled in 3 days.",
        "Feet normal.",
        "T2DM, HbA1c 7.6 % (improving, not at target). HTN controlled.",
        "Metformin increased to 1000 mg twice daily. Others the same.",
        {"bp-systolic": "138", "bp-diastolic": "88", "pulse": "80", "weight": "82.1"},
        (T2DM, HTN),
        rx=STEPPED_UP,
        lab=LabOrder(
            (("HbA1c", "4548-4", None),),
            ("HbA1c 7.6 % (target below 7 %)",),
            False,
            "HbA1c down from 8.9 to 7.6 %. Metformin to 1000 mg twice daily.",
        ),
    ),
    Seen(
        450,
        time(18, 30),
        "Finds 3 rotis at lunch too much; eats rice at dinner.",
        "Weight down 2 kg since the start.",
        "T2DM, HTN, overweight: losing weight slowly.",
        "Diet plan revised to 1,500 kcal with more variety. Continue medicines.",
        {"bp-systolic": "136", "bp-diastolic": "86", "weight": "81.5", "pulse": "78"},
        (T2DM, HTN),
        rx=REPEAT,
        diet="revise",
    ),
    Seen(
        390,
        time(10, 20),
        "Walking daily now. No hypoglycaemia.",
        "Feet normal; pulses felt.",
        "T2DM, HTN, dyslipidaemia: stable.",
        "Continue. Repeat HbA1c and lipids in 3 months.",
        {
            "bp-systolic": "134",
            "bp-diastolic": "86",
            "pulse": "76",
            "weight": "81.0",
            "blood-sugar-random": "164",
        },
        (T2DM, HTN, LIPIDS),
        rx=REPEAT,
    ),
    Seen(
        330,
        time(11, 30),
        "Burning pain in the upper abdomen after meals for a week, worse after spicy food "
        "at a wedding. No vomiting, no black stools.",
        "Mild epigastric tenderness. No guarding.",
        "Acute gastritis.",
        "Pantoprazole 40 mg before breakfast for 2 weeks; small meals, avoid spicy and fried "
        "food and tea on an empty stomach. Regular medicines continue.",
        {"bp-systolic": "132", "bp-diastolic": "84", "pulse": "80", "temperature": "98.6"},
        (("K29.7", None), T2DM),
        rx=(*STEPPED_UP, PANTOPRAZOLE_40),
    ),
    Seen(
        270,
        time(10, 0),
        "Gastritis settled. No complaints.",
        "Feet normal.",
        "T2DM at target (HbA1c 6.9 %). Lipids at target on atorvastatin.",
        "Continue the same. Keep up the walking.",
        {"bp-systolic": "138", "bp-diastolic": "88", "pulse": "76", "weight": "80.4"},
        (T2DM, HTN, LIPIDS),
        rx=STEPPED_UP,
        lab=LabOrder(
            (("HbA1c", "4548-4", None), ("Lipid profile", "57698-3", None)),
            (
                "HbA1c 6.9 % (target below 7 %)",
                "Total cholesterol 168 mg/dL; LDL 92 mg/dL; HDL 42 mg/dL; Triglycerides 148 mg/dL",
            ),
            False,
            "HbA1c 6.9 %, LDL 92 mg/dL: both at target. Continue.",
        ),
    ),
    Seen(
        210,
        time(18, 45),
        "Headaches in the mornings for two weeks; stress at work. Home BP readings 150/95.",
        "BP high on two readings 5 minutes apart. Fundus not examined.",
        "Hypertension not controlled on amlodipine alone. T2DM controlled.",
        "Add telmisartan 40 mg in the morning (also protects the kidneys). Less salt. "
        "Review in 6 weeks with home BP record.",
        {"bp-systolic": "152", "bp-diastolic": "96", "pulse": "84", "weight": "80.6"},
        (HTN, T2DM),
        rx=WITH_TELMISARTAN,
    ),
    Seen(
        160,
        time(10, 30),
        "No headaches. Home BP 130s/80s.",
        "Feet normal.",
        "HTN controlled on two drugs. T2DM stable.",
        "Continue the same medicines.",
        {"bp-systolic": "134", "bp-diastolic": "84", "pulse": "74", "weight": "80.2"},
        (HTN, T2DM),
        rx=REPEAT,
    ),
    Seen(
        120,
        time(11, 15),
        "Fever with body ache for 3 days, no cough, no rash, no bleeding.",
        "Temperature 101.6 °F. Throat normal, chest clear, no tenderness in the abdomen.",
        "Acute febrile illness, probably viral; dengue to be excluded.",
        "Paracetamol if fever, plenty of fluids. CBC today. Come back at once if there is "
        "bleeding, vomiting or abdominal pain.",
        {
            "temperature": "101.6",
            "pulse": "98",
            "spo2": "97",
            "bp-systolic": "128",
            "bp-diastolic": "80",
            "blood-sugar-random": "232",
        },
        (("R50.9", "Viral fever; dengue NS1 if fever persists"), T2DM),
        rx=(*WITH_TELMISARTAN, PARACETAMOL_650),
        lab=LabOrder(
            (("Complete blood count", "58410-2", "CBC"),),
            (
                "Haemoglobin 13.8 g/dL (13.0 to 17.0)",
                "WBC 5,600 /µL (4,000 to 11,000)",
                "Platelets 1.9 lakh /µL (1.5 to 4.1 lakh)",
            ),
            False,
            "CBC normal; platelets normal. Viral fever, settling.",
        ),
    ),
    Seen(
        90,
        time(18, 20),
        "Sweets during Diwali; sugars at home 180 to 220 after meals.",
        "Weight up 1 kg. Feet normal.",
        "T2DM above target again (HbA1c 7.4 %). HTN controlled.",
        "Add glimepiride 1 mg before breakfast; explained low-sugar symptoms and what to do. "
        "Diet plan revised with a fixed evening snack.",
        {
            "bp-systolic": "130",
            "bp-diastolic": "82",
            "pulse": "76",
            "weight": "81.2",
            "blood-sugar-random": "212",
        },
        (T2DM, HTN),
        rx=WITH_TELMISARTAN,
        rx_changed_to=WITH_GLIMEPIRIDE,
        diet="revise",
    ),
    Seen(
        60,
        time(10, 10),
        "No low-sugar episodes. Follows the diet most days.",
        "Feet normal.",
        "T2DM improving on glimepiride. HTN controlled.",
        "Continue. HbA1c and urine albumin next month.",
        {
            "bp-systolic": "128",
            "bp-diastolic": "80",
            "pulse": "74",
            "weight": "80.1",
            "blood-sugar-random": "156",
        },
        (T2DM, HTN),
        rx=REPEAT,
    ),
    Seen(
        30,
        time(9, 45),
        "Feels well. Walking 45 minutes daily.",
        "Feet normal. No oedema.",
        "T2DM and HTN controlled. Screening for kidney disease due.",
        "HbA1c and urine albumin-creatinine ratio. Continue the same medicines.",
        {
            "bp-systolic": "126",
            "bp-diastolic": "80",
            "pulse": "72",
            "weight": "79.6",
            "blood-sugar-random": "148",
        },
        (T2DM, HTN),
        rx=REPEAT,
        lab=LabOrder(
            (
                ("HbA1c", "4548-4", None),
                ("Urine albumin-creatinine ratio", "9318-7", "Kidney function"),
            ),
            ("HbA1c 6.8 % (target below 7 %)", "Urine albumin-creatinine ratio 18 mg/g (below 30)"),
            False,
            "HbA1c 6.8 %; no albumin in the urine. Well controlled.",
        ),
    ),
)

# A few more patients, and today's finished consultations: everyday OPD cases.
SHORT_CASES: tuple[Seen, ...] = (
    Seen(
        0,
        time(10, 0),
        "Sore throat and fever for 3 days, pain on swallowing.",
        "Tonsils enlarged with exudate; tender neck glands. No cough.",
        "Acute tonsillopharyngitis, likely bacterial.",
        "Amoxicillin for 5 days, paracetamol if fever, warm saline gargles.",
        {"temperature": "101.2", "pulse": "96", "spo2": "98"},
        (("J02.9", None),),
        rx=(AMOXICILLIN_500, PARACETAMOL_650),
    ),
    Seen(
        0,
        time(10, 0),
        "Fever with cough and body ache for 2 days.",
        "Chest clear. Throat congested.",
        "Viral upper respiratory infection.",
        "Paracetamol if fever, cetirizine at night, steam inhalation. CBC if fever beyond 3 days.",
        {"temperature": "100.4", "pulse": "92", "spo2": "98", "weight": "64.0"},
        (("J06.9", None),),
        rx=(PARACETAMOL_650, CETIRIZINE_10),
    ),
    Seen(
        0,
        time(10, 0),
        "Known hypertensive, ran out of tablets a week ago. Occasional headache.",
        "BP high. Heart sounds normal.",
        "Essential hypertension, uncontrolled after stopping treatment.",
        "Restart amlodipine; less salt. Lipid profile. Review in 2 weeks.",
        {"bp-systolic": "158", "bp-diastolic": "98", "pulse": "82", "weight": "72.5"},
        (HTN,),
        rx=(AMLODIPINE_5,),
    ),
)

CHILD_CASE = Seen(
    0,
    time(10, 0),
    "Fever for 2 days with a running nose and mild cough; eating less, drinking well. "
    "Mother gave one dose of paracetamol syrup last night.",
    "Active, playful between fever spikes. Throat congested, ears normal, chest clear.",
    "Viral upper respiratory infection.",
    "Paracetamol syrup by weight if fever, fluids, saline nose drops. Come back if fast "
    "breathing, drowsiness or fever beyond 3 days.",
    {"temperature": "100.6", "pulse": "118", "spo2": "98"},
    (("J06.9", None),),
    rx=(
        Med(
            "Paracetamol",
            "250 mg/5 ml",
            "oral liquid",
            "5 ml",
            "every 6 hours",
            3,
            timing=None,
            instructions="Only if fever above 100 °F; at most 4 doses a day",
        ),
    ),
)

# The history's diet plan: the template's day and two more, as the doctor adapts it.
DAY_2 = {
    "day": 2,
    "meals": [
        {
            "label": "Breakfast",
            "items": [
                {"name": "Vegetable poha (पोहा)", "qty": 1, "unit": "plate"},
                {"name": "Tea, no sugar (चाय)", "qty": 1, "unit": "cup"},
            ],
        },
        {
            "label": "Lunch",
            "items": [
                {"name": "Jowar roti (ज्वार रोटी)", "qty": 2, "unit": "pieces"},
                {"name": "Dal (दाल)", "qty": 1, "unit": "bowl"},
                {"name": "Bhindi sabzi (भिंडी)", "qty": 1, "unit": "bowl"},
            ],
        },
        {
            "label": "Evening",
            "items": [{"name": "Buttermilk (छाछ)", "qty": 1, "unit": "glass"}],
        },
        {
            "label": "Dinner",
            "items": [
                {"name": "Rice (चावल)", "qty": 0.5, "unit": "cup"},
                {"name": "Moong dal (मूंग दाल)", "qty": 1, "unit": "bowl"},
                {"name": "Salad (सलाद)", "qty": 1, "unit": "plate"},
            ],
        },
    ],
}
DAY_3 = {
    "day": 3,
    "meals": [
        {
            "label": "Breakfast",
            "items": [
                {"name": "Moong dal chilla (चीला)", "qty": 2, "unit": "pieces"},
                {"name": "Green chutney (हरी चटनी)", "qty": 2, "unit": "tbsp"},
            ],
        },
        {
            "label": "Lunch",
            "items": [
                {"name": "Roti (रोटी)", "qty": 2, "unit": "pieces"},
                {"name": "Rajma (राजमा)", "qty": 1, "unit": "bowl"},
                {"name": "Cucumber raita (रायता)", "qty": 1, "unit": "bowl"},
            ],
        },
        {
            "label": "Evening",
            "items": [{"name": "Guava (अमरूद)", "qty": 1, "unit": "piece"}],
        },
        {
            "label": "Dinner",
            "items": [
                {"name": "Vegetable khichdi (खिचड़ी)", "qty": 1, "unit": "bowl"},
                {"name": "Curd (दही)", "qty": 100, "unit": "g"},
            ],
        },
    ],
}
DIABETIC_TEMPLATE = "Diabetic vegetarian (1,600 kcal)"
REVISED_MACROS = {"calories": 1500, "protein": 65, "carbs": 180, "fat": 45}


# --------------------------------------------------------------------------- the cast


@dataclass
class Cast:
    """Who acts in the demo's consultations, each with a clock the demo moves."""

    ctx: RequestContext
    ident: Identity
    storage: Storage
    base_url: str
    doctor: DoctorProfile
    doctor_user: uuid.UUID
    desk_user: uuid.UUID
    moment: list[datetime] = field(default_factory=list)
    zone: Any = None

    def acting(self, user_id: uuid.UUID | None, role: str) -> RequestContext:
        lived = self.ctx.for_tenant(self.doctor.tenant_id)
        lived.actor_id = user_id
        lived.role = role
        lived.clock = lambda: self.moment[0]
        lived.pending_audit = self.ctx.pending_audit  # one transaction, one trail
        return lived

    @property
    def as_doctor(self) -> RequestContext:
        return self.acting(self.doctor_user, "doctor")

    @property
    def as_desk(self) -> RequestContext:
        return self.acting(self.desk_user, "frontdesk")

    def at(self, when: datetime) -> None:
        self.moment[:] = [when]

    def local(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, self.zone)


def _user_id(session: Session, email: str) -> uuid.UUID | None:
    return session.execute(select(User.id).where(User.email == email)).scalar_one_or_none()


def _patient_by_phone(session: Session, ident: Identity, phone: str) -> Patient | None:
    digest = ident.cipher.blind_index(phone, purpose="phone")
    return session.execute(
        select(Patient)
        .where(Patient.phone_hash == digest, Patient.guardian_id.is_(None))
        .order_by(Patient.number)
        .limit(1)
    ).scalar_one_or_none()


def _has_visits(session: Session, patient_id: uuid.UUID) -> bool:
    return (
        session.execute(select(Visit.id).where(Visit.patient_id == patient_id)).first() is not None
    )


# --------------------------------------------------------------------------- the entry point


def refresh_demo_clinical(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    storage: Storage,
    base_url: str,
) -> int:
    """Consultations for the demo clinic (run after its people and schedule are made);
    returns how many visits were signed. What exists already is left as it is.
    """
    doctor_user = _user_id(session, DOCTOR_EMAIL)
    desk_user = _user_id(session, DESK_EMAIL)
    if doctor_user is None or desk_user is None:
        return 0
    doctor = session.execute(
        select(DoctorProfile).where(DoctorProfile.user_id == doctor_user)
    ).scalar_one_or_none()
    if doctor is None:
        return 0
    cast = Cast(
        ctx,
        ident,
        storage,
        base_url,
        doctor,
        doctor_user,
        desk_user,
        [ctx.now()],
        tenants.zone_of(session, doctor.tenant_id),
    )
    signed = 0
    suresh = _patient_by_phone(session, ident, LONG_HISTORY_PHONE)
    if suresh is not None and not _has_visits(session, suresh.id):
        formulary.ensure_seeded(session, cast.as_doctor)
        signed += _long_history(session, cast, suresh)
        _open_today(session, cast, suresh)
    for n, phone in enumerate(SHORT_HISTORY_PHONES):
        patient = _patient_by_phone(session, ident, phone)
        if patient is not None and not _has_visits(session, patient.id):
            signed += _short_history(session, cast, patient, n)
    signed += _todays_finished(session, cast, apart=suresh.id if suresh else None)
    return signed


# --------------------------------------------------------------------------- one visit


def _walk_in(
    session: Session, cast: Cast, patient: Patient, starts: datetime, visit_type: str
) -> Appointment:
    """A past visit as the desk lived it: the patient walks in, is seen, leaves."""
    offers = waitlist.Offers(cast.ident.cipher, cast.ident.settings.offer_for)
    cast.at(starts - timedelta(minutes=20))
    appointment = lifecycle.walk_in(
        session,
        cast.as_desk,
        patient_id=patient.id,
        doctor_id=cast.doctor.id,
        visit_type=visit_type,
        reason=None,
    )
    cast.at(starts)
    lifecycle.transition(
        session, cast.as_desk, offers, appointment_id=appointment.id, to="in-consult"
    )
    cast.at(starts + timedelta(minutes=12))
    lifecycle.transition(
        session, cast.as_desk, offers, appointment_id=appointment.id, to="completed"
    )
    return appointment


def _consult(
    session: Session,
    cast: Cast,
    appointment: Appointment,
    seen: Seen,
    starts: datetime,
    *,
    plans: list[DietPlan] | None = None,
) -> Visit:
    """Vitals by the desk, then the doctor's note, diagnoses, prescription, orders and
    diet plan, and the signature, each at the minute it would have happened.
    """
    cipher = cast.ident.cipher
    cast.at(starts - timedelta(minutes=8))
    visit = visits.open_visit(session, cast.as_desk, appointment_id=appointment.id)
    vitals.record(session, cast.as_desk, cipher, visit_id=visit.id, readings=dict(seen.vitals))
    cast.at(starts + timedelta(minutes=6))
    doctor = cast.as_doctor
    note = visits.Soap(seen.s, seen.o, seen.a, seen.p)
    visits.save_note(session, doctor, cipher, visit_id=visit.id, soap=note, explicit=True)
    for code, text in seen.diagnoses:
        visits.add_diagnosis(session, doctor, cipher, visit_id=visit.id, code=code, text=text)
    cast.at(starts + timedelta(minutes=9))
    if seen.rx is not None:
        issued = _prescribe(session, cast, visit, seen.rx)
        if seen.rx_changed_to is not None:
            cast.at(starts + timedelta(minutes=10))
            _change(session, cast, issued, seen.rx_changed_to)
    if seen.diet is not None and plans is not None:
        plans.append(_diet(session, cast, visit, seen.diet, plans))
    order = None
    if seen.lab is not None:
        order = orders.place(
            session,
            cast.as_doctor,
            visit_id=visit.id,
            type_="lab",
            items=[{"name": n, "code": c, "panel": p} for n, c, p in seen.lab.tests],
        )
    cast.at(starts + timedelta(minutes=11))
    visits.sign(session, cast.as_doctor, cipher, visit_id=visit.id)
    if order is not None and seen.lab is not None:
        _results(session, cast, order, seen.lab, starts)
    return visit


def _items(session: Session, meds: tuple[Med, ...]) -> list[prescriptions.ItemIn]:
    found = []
    for med in meds:
        drug = session.execute(
            select(FormularyDrug).where(
                FormularyDrug.generic_name == med.generic,
                FormularyDrug.strength == med.strength,
                FormularyDrug.form == med.form,
                FormularyDrug.brand_name.is_(None),
            )
        ).scalar_one()
        found.append(
            prescriptions.ItemIn(
                drug_id=drug.id,
                route="oral",
                dose=med.dose,
                frequency=med.frequency,
                duration_days=med.days,
                timing=med.timing,
                instructions=med.instructions,
                refills=med.refills,
                refill_interval_days=30 if med.refills else None,
            )
        )
    return found


def _acknowledged_and_issued(session: Session, cast: Cast, draft_id: uuid.UUID) -> Prescription:
    """The doctor reads each warning (an allergy the patient has, two drugs of one class),
    acknowledges it, and issues.
    """
    doctor, cipher = cast.as_doctor, cast.ident.cipher
    draft = prescriptions.get(session, draft_id)
    for index, flag in enumerate(draft.allergy_flags or []):
        if not flag.get("acknowledgedAt"):
            prescriptions.acknowledge(
                session, doctor, cipher, prescription_id=draft.id, index=index
            )
    return prescriptions.issue(
        session, doctor, cipher, prescription_id=draft.id, base_url=cast.base_url
    )


def _prescribe(
    session: Session, cast: Cast, visit: Visit, rx: tuple[Med, ...] | str
) -> Prescription:
    doctor, cipher = cast.as_doctor, cast.ident.cipher
    draft = prescriptions.start(session, doctor, visit_id=visit.id)
    if rx == REPEAT:
        prescriptions.repeat_last(session, doctor, cipher, prescription_id=draft.id)
    else:
        assert isinstance(rx, tuple)
        draft = prescriptions.set_items(
            session, doctor, cipher, prescription_id=draft.id, items=_items(session, rx)
        )
        allergic = {
            f["itemName"] for f in draft.allergy_flags if f["type"] in ("allergy", "allergy-class")
        }
        safer = tuple(
            INSTEAD.get(med.generic, med) if med.generic in allergic else med for med in rx
        )
        if safer != rx:  # the patient is allergic: the doctor chooses another medicine
            prescriptions.set_items(
                session, doctor, cipher, prescription_id=draft.id, items=_items(session, safer)
            )
    return _acknowledged_and_issued(session, cast, draft.id)


def _change(session: Session, cast: Cast, issued: Prescription, meds: tuple[Med, ...]) -> None:
    """A change after issue: a new version that supersedes the one given a minute ago."""
    doctor, cipher = cast.as_doctor, cast.ident.cipher
    new = prescriptions.change(session, doctor, cipher, prescription_id=issued.id)
    prescriptions.set_items(
        session, doctor, cipher, prescription_id=new.id, items=_items(session, meds)
    )
    _acknowledged_and_issued(session, cast, new.id)


def _diet(session: Session, cast: Cast, visit: Visit, how: str, plans: list[DietPlan]) -> DietPlan:
    doctor = cast.as_doctor
    if how == "new":
        diet.add_standard_templates(session, doctor)
        template = next(t for t in diet.templates(session) if t.name == DIABETIC_TEMPLATE)
        plan = diet.create(session, doctor, visit_id=visit.id, template_id=template.id)
        plan = diet.update(
            session,
            doctor,
            plan_id=plan.id,
            macros=plan.macros,
            schedule=[*plan.schedule, DAY_2],
        )
    else:
        plan = diet.revise(session, doctor, plan_id=plans[-1].id)
        days = [d for d in plan.schedule if d["day"] != 3][:2]
        if len(plans) >= 2:  # the second revision adds a third day and a fixed snack
            days = [*days, DAY_3]
        plan = diet.update(session, doctor, plan_id=plan.id, macros=REVISED_MACROS, schedule=days)
    return diet.issue(session, doctor, plan_id=plan.id)


def _lab_report(title: str, lines: tuple[str, ...], collected: str) -> bytes:
    """The lab's report as the lab sends it: a plain one-page PDF in a built-in font
    (Latin text only; nothing to embed, so the demo makes it in milliseconds).
    """
    report = FPDF(format="A4")
    report.set_margins(20, 20, 20)
    report.add_page()
    report.set_font("helvetica", "B", 15)
    report.multi_cell(0, 8, "Sunrise Diagnostics, Pune", new_x="LMARGIN", new_y="NEXT")
    report.set_font("helvetica", "", 12)
    report.multi_cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    report.multi_cell(0, 7, collected, new_x="LMARGIN", new_y="NEXT")
    report.ln(4)
    for line in lines:
        report.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        report.ln(1)
    report.ln(6)
    report.set_font("helvetica", "I", 9)
    report.multi_cell(
        0,
        5,
        "(H) above, (L) below the reference range. Demo report.",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    return bytes(report.output())


def _results(session: Session, cast: Cast, order: Order, lab: LabOrder, starts: datetime) -> None:
    """The sample is taken at once, the lab's report comes the next day, and the doctor
    reviews it that evening (the patient is told then, not before).
    """
    cipher = cast.ident.cipher
    cast.at(starts + timedelta(minutes=25))
    orders.record_collected(session, cast.as_desk, order_id=order.id)
    reported = cast.local(starts.astimezone(cast.zone).date() + timedelta(days=1), time(12, 30))
    cast.at(reported)
    title = "Laboratory report: " + ", ".join(name for name, _, _ in lab.tests)
    collected = starts.astimezone(cast.zone)
    report = _lab_report(title, lab.report, f"Sample collected {collected:%d %b %Y, %H:%M}.")
    orders.attach_report(
        session,
        cast.as_desk,
        cipher,
        cast.storage,
        order_id=order.id,
        filename=f"{lab.tests[0][0].lower().replace(' ', '-')}-{collected:%Y-%m-%d}.pdf",
        data=report,
        abnormal=lab.abnormal,
        max_bytes=REPORT_BYTES,
    )
    cast.at(reported + timedelta(hours=6))
    orders.review(
        session,
        cast.as_doctor,
        cipher,
        order_id=order.id,
        abnormal=lab.abnormal,
        note=lab.review_note,
        base_url=cast.base_url,
    )


# --------------------------------------------------------------------------- the patients


def _long_history(session: Session, cast: Cast, patient: Patient) -> int:
    today = cast.ctx.now().astimezone(cast.zone).date()
    plans: list[DietPlan] = []
    _his_record(session, cast, patient, today)
    for n, seen in enumerate(SURESH):
        day = _working_day(today - timedelta(days=seen.days_ago))
        starts = cast.local(day, seen.at)
        visit_type = "consultation" if n == 0 else "follow-up"
        appointment = _walk_in(session, cast, patient, starts, visit_type)
        _consult(session, cast, appointment, seen, starts, plans=plans)
    _ticks(session, cast, patient, plans)
    return len(SURESH)


def _his_record(session: Session, cast: Cast, patient: Patient, today: date) -> None:
    """The long history is a man in his fifties: his date of birth and his chronic
    conditions, as the desk recorded them at his first visit.
    """
    first = _working_day(today - timedelta(days=SURESH[0].days_ago))
    cast.at(cast.local(first, SURESH[0].at) - timedelta(minutes=30))
    changes = PatientUpdate.model_validate(
        {"dob": LONG_HISTORY_DOB, "chronicConditions": ["Type 2 diabetes", "Hypertension"]}
    )
    patient_records.update(
        session, cast.as_desk, cast.ident, patient_id=patient.id, changes=changes
    )


def _working_day(day: date) -> date:
    """The clinic is closed on Sundays: a visit that would fall on one is on Saturday."""
    return day - timedelta(days=1) if day.weekday() == 6 else day


def _ticks(session: Session, cast: Cast, patient: Patient, plans: list[DietPlan]) -> None:
    """The patient ticked meals in the portal: all of the older plan's first days, and
    the current plan's first two days whole and the third in part.
    """
    phone_hash = cast.ident.cipher.blind_index(LONG_HISTORY_PHONE, purpose="phone")
    login = session.execute(
        select(User.id).where(User.role == "patient", User.phone_hash == phone_hash)
    ).scalar_one_or_none()
    me = cast.acting(login, "patient")
    for plan, days in ((plans[-2], 2), (plans[-1], 3)) if len(plans) >= 2 else ():
        assert plan.issued_at is not None
        for day in plan.schedule[:days]:
            meals = day["meals"] if day["day"] < 3 else day["meals"][:2]
            for meal in meals:
                cast.at(plan.issued_at + timedelta(days=day["day"] - 1, hours=3))
                diet.tick(session, me, plan=plan, day=day["day"], meal=meal["label"], done=True)


def _open_today(session: Session, cast: Cast, patient: Patient) -> Visit:
    """Today he is back, checked in as a walk-in; the desk has taken his vitals and the
    visit waits for the doctor.
    """
    now = cast.ctx.now()
    arrived = min(now, cast.local(now.astimezone(cast.zone).date(), time(10, 5)))
    cast.at(arrived)
    appointment = lifecycle.walk_in(
        session,
        cast.as_desk,
        patient_id=patient.id,
        doctor_id=cast.doctor.id,
        visit_type="follow-up",
        reason="Diabetes and BP review; HbA1c due",
    )
    visit = visits.open_visit(session, cast.as_desk, appointment_id=appointment.id)
    readings: dict[str, str | float | Decimal] = {
        "bp-systolic": "128",
        "bp-diastolic": "82",
        "pulse": "74",
        "weight": "79.2",
        "blood-sugar-random": "152",
        "spo2": "98",
        "temperature": "98.4",
    }
    vitals.record(session, cast.as_desk, cast.ident.cipher, visit_id=visit.id, readings=readings)
    return visit


def _short_history(session: Session, cast: Cast, patient: Patient, n: int) -> int:
    """A past visit for an acute illness, with an order still open."""
    today = cast.ctx.now().astimezone(cast.zone).date()
    seen = _case_for(patient, today, n)
    starts = cast.local(_working_day(today - timedelta(days=40 + 25 * n)), time(11, 40))
    appointment = _walk_in(session, cast, patient, starts, "consultation")
    visit = _consult(session, cast, appointment, seen, starts)
    # An order the desk is still following: a chest X-ray collected, a blood test ordered.
    cast.at(starts + timedelta(minutes=10))
    kind, items = (
        ("lab", [{"name": "Complete blood count", "code": "58410-2", "panel": "CBC"}])
        if n == 0
        else ("imaging", [{"name": "Chest X-ray PA view", "code": "36643-5", "panel": None}])
    )
    order = orders.place(session, cast.as_doctor, visit_id=visit.id, type_=kind, items=items)
    if kind == "imaging":
        cast.at(starts + timedelta(minutes=40))
        orders.record_collected(session, cast.as_desk, order_id=order.id)
    return 1


def _case_for(patient: Patient, today: date, n: int) -> Seen:
    """An everyday case that fits the patient's age: children get the child's fever."""
    years, _ = patient_records.age_of(patient, today)
    return CHILD_CASE if years < 14 else SHORT_CASES[n % len(SHORT_CASES)]


def _todays_finished(session: Session, cast: Cast, *, apart: uuid.UUID | None) -> int:
    """Today's completed appointments with the demo doctor get their signed visit (but
    not one of the long-history patient's, whose visit today is the open one).
    """
    today = cast.ctx.now().astimezone(cast.zone).date()
    done = session.execute(
        select(Appointment, Slot)
        .join(Slot, (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id))
        .outerjoin(
            Visit,
            (Visit.tenant_id == Appointment.tenant_id) & (Visit.appointment_id == Appointment.id),
        )
        .where(
            Appointment.doctor_id == cast.doctor.id,
            Appointment.status == AppointmentStatus.COMPLETED,
            Slot.date >= today,  # made on a Sunday, "today" is the next working day
            Slot.date <= today + timedelta(days=6),
            Visit.id.is_(None),
            Appointment.patient_id != apart if apart is not None else true(),
        )
        .order_by(Slot.starts_at)
    ).all()
    if done:
        formulary.ensure_seeded(session, cast.as_doctor)
    for n, (appointment, slot) in enumerate(done):
        patient = session.get_one(Patient, (appointment.tenant_id, appointment.patient_id))
        _consult(session, cast, appointment, _case_for(patient, today, n), slot.starts_at)
    return len(done)
