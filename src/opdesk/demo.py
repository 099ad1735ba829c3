"""The demo clinic: created or refreshed by ``opdesk demo`` (later issues add their data)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.identity import service as identity
from opdesk.identity.models import User
from opdesk.identity.service import Identity
from opdesk.security.passwords import hash_password, verify_password
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import Address, TenantCreate, TenantUpdate
from opdesk.uow import enter_tenant

DEMO_SLUG = "sunrise-clinic"

DEMO_PROFILE = TenantCreate(
    name="Sunrise Family Clinic",
    slug=DEMO_SLUG,
    timezone="Asia/Kolkata",
    gstin="27AAPFU0939F1ZV",
    address=Address(
        line1="14, Shivaji Nagar Main Road",
        line2="Opp. Kamla Nehru Park",
        city="Pune",
        state="Maharashtra",
        pincode="411005",
    ),
    phone="+912025531234",
    invoice_prefix="SUN",
)


def refresh_demo(session: Session, ctx: RequestContext) -> Tenant:
    """Create the demo clinic, or put its profile back as shipped; restores it if deleted."""
    existing = tenants.find_by_slug(session, DEMO_SLUG, include_deleted=True)
    if existing is None:
        return tenants.create_tenant(session, ctx, data=DEMO_PROFILE)
    enter_tenant(session, ctx, existing.id)
    if existing.deleted_at is not None:
        tenants.restore_tenant(session, ctx, tenant_id=existing.id)
    fields = DEMO_PROFILE.model_dump(exclude={"slug"})
    return tenants.update_tenant(
        session, ctx, tenant_id=existing.id, changes=TenantUpdate.model_validate(fields)
    )


DEMO_STAFF = (
    ("admin", "Meera Kulkarni"),
    ("frontdesk", "Ravi Patil"),
    ("doctor", "Dr. Anjali Deshmukh"),
    ("pharmacy", "Sameer Shaikh"),
    ("accounts", "Pooja Joshi"),
)
DEMO_PATIENTS = (
    ("+919822012345", "Suresh Jadhav"),
    ("+919890054321", "Lakshmi Iyer"),
    ("+917020098765", "अमित शर्मा"),
)
CREDENTIALS_FILE = "demo-credentials.json"


@dataclass(frozen=True)
class DemoLogin:
    role: str
    name: str
    email: str
    password: str


def demo_passwords(data_dir: Path) -> dict[str, str]:
    """Random passwords made at the first ``opdesk demo`` and kept in the data folder."""
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        if set(stored) >= {role for role, _ in DEMO_STAFF}:
            return stored
    passwords = {role: f"demo-{role}-{secrets.token_hex(4)}" for role, _ in DEMO_STAFF}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(passwords, fh, indent=2)
    return passwords


def refresh_demo_people(
    session: Session, ctx: RequestContext, ident: Identity, passwords: dict[str, str]
) -> list[DemoLogin]:
    """One user per staff role (password reset to the demo one) and a few patients."""
    logins = []
    for role, name in DEMO_STAFF:
        email = f"{role}@sunrise-clinic.example"
        user = session.execute(select(User).where(User.email == email)).scalar_one_or_none()
        if user is None:
            identity.create_user(
                session, ctx, ident, name=name, role=role, email=email, password=passwords[role]
            )
        elif not user.active or not verify_password(
            passwords[role], user.password_hash, fast=ident.fast
        ):
            identity.update_user(session, ctx, user_id=user.id, active=True)
            user.password_hash = hash_password(passwords[role], fast=ident.fast)
            audit.record(
                ctx,
                entity="users",
                entity_id=user.id,
                action="update",
                diff=audit.diff_of({"passwordHash": "old"}, {"passwordHash": "demo"}),
            )
        logins.append(DemoLogin(role, name, email, passwords[role]))
    session.flush()
    return logins


FIRST_NAMES = {
    "female": (
        "Sunita",
        "Lakshmi",
        "Priya",
        "Anjali",
        "Kavya",
        "Meera",
        "Pooja",
        "Shreya",
        "Deepa",
        "Fatima",
        "Ananya",
        "Revathi",
        "Sneha",
        "Asha",
        "Nandini",
        "सुनीता",
        "प्रिया",
        "अंजली",
        "मीरा",
        "லட்சுமி",
    ),
    "male": (
        "Ravi",
        "Suresh",
        "Amit",
        "Rahul",
        "Vikram",
        "Arjun",
        "Imran",
        "Karthik",
        "Sanjay",
        "Mahesh",
        "Prakash",
        "Anil",
        "Rohan",
        "Ganesh",
        "Farhan",
        "अमित",
        "राहुल",
        "सुरेश",
        "गणेश",
        "முருகன்",
    ),
}
LAST_NAMES = (
    "Patil",
    "Sharma",
    "Iyer",
    "Deshmukh",
    "Kulkarni",
    "Joshi",
    "Shaikh",
    "Nair",
    "Reddy",
    "Jadhav",
    "Pawar",
    "More",
    "Gupta",
    "Khan",
    "Menon",
    "Rao",
    "शर्मा",
    "पाटील",
    "जोशी",
    "சுப்பிரமணியன்",
)
CITIES = (
    "Pune",
    "Pimpri-Chinchwad",
    "Mumbai",
    "Nashik",
    "Satara",
    "Kolhapur",
    "Ahmednagar",
    "Nagpur",
    "Solapur",
    "Baramati",
)
CONDITIONS = ("Type 2 diabetes", "Hypertension", "Asthma", "Hypothyroidism", "Arthritis")
ALLERGENS = (
    ("Penicillin", "rash", "severe"),
    ("Sulfa drugs", "hives", "moderate"),
    ("Peanuts", "swelling", "severe"),
    ("Dust", "sneezing", "mild"),
)
DEMO_PATIENT_COUNT = 300


def refresh_demo_patients(
    session: Session, ctx: RequestContext, ident: Identity, *, count: int = DEMO_PATIENT_COUNT
) -> int:
    """A few hundred patients (about a fifth with family members on the same phone).

    Deterministic, and run only while the clinic has fewer patients than that.
    """
    from random import Random

    from sqlalchemy import func

    from opdesk.patients.models import Patient

    have = session.execute(select(func.count()).select_from(Patient)).scalar_one()
    if have >= count:
        return 0
    rng = Random(20261125)
    made = 0
    for phone, name in DEMO_PATIENTS:
        made += _register_demo(session, ctx, ident, _demo_person(rng, name=name, phone=phone))
    while have + made < count:
        phone = _demo_mobile(rng)
        guardian = _register_demo(session, ctx, ident, _demo_person(rng, phone=phone), keep=True)
        made += 1 if guardian else 0
        if guardian and rng.random() < 0.2:
            for relation in rng.sample(("son", "daughter", "mother", "father"), rng.randint(1, 2)):
                person = _demo_person(rng, guardian=guardian, relation=relation)
                made += _register_demo(session, ctx, ident, person)
    session.flush()
    return made


def _demo_mobile(rng: Any) -> str:
    from opdesk.validation import mobile_e164

    while True:
        candidate = (
            f"+91{rng.choice(('98', '97', '99', '88', '70', '90'))}{rng.randrange(10**8):08d}"
        )
        try:
            return mobile_e164(candidate)
        except ValueError:
            continue


def _demo_person(
    rng: Any,
    *,
    name: str | None = None,
    phone: str | None = None,
    guardian: Any = None,
    relation: str | None = None,
) -> dict[str, Any]:
    first, _, last = (name or "").partition(" ")
    gender = _gender_of(rng, first, relation)
    doc: dict[str, Any] = {
        "name": {
            "first": first or rng.choice(FIRST_NAMES[gender]),
            "last": last or (guardian.name_last if guardian else rng.choice(LAST_NAMES)),
        },
        "gender": gender,
        "city": guardian.city if guardian else rng.choice(CITIES),
    }
    if guardian is not None:
        doc.update(guardianId=str(guardian.id), guardianRelation=relation)
    else:
        doc["phone"] = phone
    if rng.random() < 0.8:
        doc["dob"] = f"{rng.randint(1940, 2022)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    else:
        doc["ageYears"] = rng.randint(18, 85)
    if rng.random() < 0.25:
        doc["chronicConditions"] = rng.sample(CONDITIONS, rng.randint(1, 2))
    if rng.random() < 0.15:
        substance, reaction, severity = rng.choice(ALLERGENS)
        doc["allergies"] = [{"substance": substance, "reaction": reaction, "severity": severity}]
    return doc


# A dependent's relation says their gender; the guardian's side is not recorded.
RELATION_GENDERS = {"son": "male", "daughter": "female", "mother": "female", "father": "male"}


def _gender_of(rng: Any, first: str, relation: str | None) -> str:
    """The gender of the name list ``first`` comes from, of the relation, or a coin toss
    (the first name is then drawn from that gender's list).
    """
    for gender, names in FIRST_NAMES.items():
        if first in names:
            return gender
    if relation in RELATION_GENDERS:
        return RELATION_GENDERS[relation]
    return str(rng.choice(("female", "male")))


def _register_demo(
    session: Session, ctx: RequestContext, ident: Identity, doc: dict[str, Any], keep: bool = False
) -> Any:
    from opdesk.errors import Conflict
    from opdesk.patients import service as patients
    from opdesk.patients.schemas import PatientCreate

    try:
        patient = patients.register(session, ctx, ident, data=PatientCreate.model_validate(doc))
    except Conflict:
        return None if keep else 0
    return patient if keep else 1


DEMO_TEMPLATES = (
    (
        "treatment",
        "Consent for examination and treatment",
        "I agree to be examined and treated by the doctors of this clinic. The doctor has "
        "explained what will be done and I may ask questions at any time.",
    ),
    (
        "data-processing",
        "Use of my health information (DPDP Act, 2023)",
        "The clinic keeps my health records to treat me and to meet its legal duties. It "
        "shares them only with those treating me or where the law requires. I may ask to see, "
        "correct or erase them, and withdraw this consent at any time.",
    ),
    (
        "whatsapp",
        "Reminders on WhatsApp",
        "I agree that the clinic may send me appointment reminders, reports and bills on "
        "WhatsApp at my registered mobile number. I can stop this at any time.",
    ),
)
# The same versions in Hindi (each consent's version 1, written in a second language).
DEMO_TRANSLATIONS = (
    (
        "treatment",
        "hi",
        "जाँच और उपचार के लिए सहमति",
        "मैं इस क्लिनिक के डॉक्टरों द्वारा अपनी जाँच और उपचार के लिए सहमति देता/देती हूँ। "
        "डॉक्टर ने मुझे समझाया है कि क्या किया जाएगा, और मैं कभी भी प्रश्न पूछ सकता/सकती हूँ।",
    ),
    (
        "data-processing",
        "hi",
        "मेरी स्वास्थ्य जानकारी का उपयोग (डिजिटल व्यक्तिगत डेटा संरक्षण अधिनियम, 2023)",
        "क्लिनिक मेरा इलाज करने और अपने कानूनी दायित्व पूरे करने के लिए मेरे स्वास्थ्य "
        "रिकॉर्ड रखता है। वह इन्हें केवल मेरा इलाज करने वालों के साथ, या जहाँ कानून ऐसा कहे, "
        "साझा करता है। मैं इन्हें देखने, सुधारने या मिटाने के लिए कह सकता/सकती हूँ, और यह "
        "सहमति कभी भी वापस ले सकता/सकती हूँ।",
    ),
    (
        "whatsapp",
        "hi",
        "WhatsApp पर रिमाइंडर",
        "मैं सहमति देता/देती हूँ कि क्लिनिक मेरे पंजीकृत मोबाइल नंबर पर WhatsApp के ज़रिए "
        "मुझे अपॉइंटमेंट के रिमाइंडर, रिपोर्ट और बिल भेज सकता है। मैं इसे कभी भी बंद "
        "करवा सकता/सकती हूँ।",
    ),
)


def refresh_demo_paperwork(
    session: Session, ctx: RequestContext, ident: Identity, storage: Any, fonts: Path
) -> int:
    """Consent texts, and signed consents plus a lab report for the first demo patients.

    Runs once: a clinic that already has consent texts is left as it is.
    """
    from opdesk.consents import service as consents
    from opdesk.documents import pdf
    from opdesk.documents import service as documents
    from opdesk.patients.models import Patient

    if consents.templates(session):
        return 0
    for type_, title, body in DEMO_TEMPLATES:
        consents.add_template(session, ctx, type_=type_, title=title, body=body)
    for type_, language, title, body in DEMO_TRANSLATIONS:
        consents.add_translation(
            session, ctx, type_=type_, version=1, language=language, title=title, body=body
        )
    first = session.execute(select(Patient).order_by(Patient.number).limit(12)).scalars().all()
    signed = 0
    for patient in first:
        for type_ in ("treatment", "data-processing"):
            consents.sign(
                session,
                ctx,
                ident.cipher,
                storage,
                patient_id=patient.id,
                type_=type_,
                method="in-clinic",
                fonts=fonts,
                version=consents.current_template(session, type_).version,
            )
            signed += 1
        report = pdf.document(
            fonts,
            f"Complete blood count — {patient.full_name}",
            [
                "Haemoglobin 13.2 g/dL (13.0 to 17.0)",
                "WBC 7,200 /µL (4,000 to 11,000)",
                "Platelets 2.6 lakh /µL (1.5 to 4.1 lakh)",
            ],
            "Sunrise Diagnostics, Pune — demo report",
        )
        documents.upload(
            session,
            ctx,
            ident.cipher,
            storage,
            patient_id=patient.id,
            category="lab-report",
            filename="cbc-report.pdf",
            data=report,
            tags=["blood", "cbc"],
            max_bytes=5 * 1024 * 1024,
        )
    return signed
