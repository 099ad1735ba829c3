"""The ABHA v3 login by OTP against the fake gateway, which really decrypts what is sent.

No database: nothing here takes a fixture from tests/conftest.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import date

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from opdesk.abdm.abha import (
    CERTIFICATE_PATH,
    REQUEST_OTP_PATH,
    AbhaClient,
    OtpRejected,
    VerifiedAbha,
    dashed,
    encrypt_for_abha,
    load_public_key,
)
from opdesk.abdm.gateway import GatewayClient, GatewayError
from tests.fakes.abdm_gateway import (
    ABHA_PREFIX,
    TEST_ABHA,
    TEST_OTP,
    UIDAI_WRONG_OTP,
    WRONG_OTP_MESSAGE,
    FakeAbdmGateway,
    cached_key,
    json_answer,
    luhn_complete,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway() -> Iterator[FakeAbdmGateway]:
    with FakeAbdmGateway() as fake:
        yield fake


@pytest.fixture
def client(gateway: FakeAbdmGateway) -> Iterator[GatewayClient]:
    with GatewayClient(gateway.url, gateway.client_id, gateway.client_secret, timeout=2.0) as made:
        yield made


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def abha(gateway: FakeAbdmGateway, client: GatewayClient, clock: Clock) -> Iterator[AbhaClient]:
    # The ABHA service on its own base URL, as on the sandbox (abhasbx.../abha/api).
    with AbhaClient(client, abha_url=gateway.url + ABHA_PREFIX, clock=clock) as made:
        yield made


def oaep_sha1() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303


# ---------------------------------------------------------------------- the whole flow


def test_an_abha_number_is_verified_end_to_end(gateway: FakeAbdmGateway, abha: AbhaClient) -> None:
    txn_id = abha.request_otp(dashed(TEST_ABHA))
    verified = abha.verify_otp(txn_id, TEST_OTP)

    assert verified == VerifiedAbha(
        abha_number=TEST_ABHA,
        abha_addresses=("asha.verma@sbx",),
        name="Asha Verma",
        gender="F",
        dob=date(1990, 8, 14),
        year_of_birth=1990,
        mobile=None,
        kyc_verified=True,
        token=verified.token,
        token_expires_in=300.0,
    )
    assert verified.abha_address == "asha.verma@sbx"
    assert verified.token
    assert "token" not in repr(verified).replace("token_expires_in", "")
    # What the fake decrypted is what was meant: the number with its dashes, then the OTP.
    assert gateway.abha_plaintexts == [dashed(TEST_ABHA), TEST_OTP]


def test_the_calls_are_what_the_abha_service_expects(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    abha.verify_otp(abha.request_otp(TEST_ABHA), TEST_OTP)

    certificate, request, verify = gateway.received
    assert certificate.method == "GET"
    assert certificate.path == ABHA_PREFIX + CERTIFICATE_PATH
    assert request.path == ABHA_PREFIX + REQUEST_OTP_PATH
    assert {k: v for k, v in request.body.items() if k != "loginId"} == {
        "scope": ["abha-login", "mobile-verify"],
        "loginHint": "abha-number",
        "otpSystem": "abdm",
    }
    assert verify.body["scope"] == ["abha-login", "mobile-verify"]
    assert verify.body["authData"]["authMethods"] == ["otp"]
    assert set(verify.body["authData"]["otp"]) == {"txnId", "otpValue"}
    # Every call carries the gateway session's token and the usual headers.
    tokens = {arrival.headers["authorization"] for arrival in gateway.received}
    assert len(tokens) == 1 and tokens.pop().startswith("Bearer ")
    assert len(gateway.sessions) == 1
    assert all(arrival.headers["x-cm-id"] == "sbx" for arrival in gateway.received)


def test_the_abha_service_may_share_the_gateway_s_base_url(
    gateway: FakeAbdmGateway, client: GatewayClient
) -> None:
    with AbhaClient(client, abha_url=None) as abha:
        verified = abha.verify_otp(abha.request_otp(TEST_ABHA), TEST_OTP)
    assert verified.abha_number == TEST_ABHA
    assert gateway.received[0].path == CERTIFICATE_PATH


def test_the_public_key_is_fetched_once_then_again_after_its_ttl(
    gateway: FakeAbdmGateway, abha: AbhaClient, clock: Clock
) -> None:
    abha.request_otp(TEST_ABHA)
    abha.request_otp(TEST_ABHA)
    clock.now += 3600
    abha.request_otp(TEST_ABHA)

    fetched = [a for a in gateway.received if a.path.endswith(CERTIFICATE_PATH)]
    assert len(fetched) == 2


def test_a_401_on_the_abha_host_renews_the_gateway_session(
    gateway: FakeAbdmGateway, client: GatewayClient, abha: AbhaClient
) -> None:
    txn_id = abha.request_otp(TEST_ABHA)
    gateway.revoke_tokens()

    assert abha.verify_otp(txn_id, TEST_OTP).abha_number == TEST_ABHA
    assert len(gateway.sessions) == 2
    client.post("/api/hiecm/link/v3/link/carecontext", {})  # the gateway client shares it
    assert len(gateway.sessions) == 2


def test_the_aadhaar_otp_system(gateway: FakeAbdmGateway, client: GatewayClient) -> None:
    with AbhaClient(client, abha_url=gateway.url + ABHA_PREFIX, otp_system="aadhaar") as abha:
        txn_id = abha.request_otp(TEST_ABHA)
        with pytest.raises(OtpRejected) as raised:
            abha.verify_otp(txn_id, "999999")
        verified = abha.verify_otp(txn_id, TEST_OTP)

    assert gateway.received[1].body["scope"] == ["abha-login", "aadhaar-verify"]
    assert gateway.received[1].body["otpSystem"] == "aadhaar"
    assert (raised.value.status, raised.value.code) == (422, "ABDM-1204")
    assert raised.value.message == UIDAI_WRONG_OTP
    assert verified.token_expires_in == 1800.0


# ---------------------------------------------------------------------- OTP refusals


def test_a_wrong_otp_is_otp_rejected_and_the_right_one_still_works(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    txn_id = abha.request_otp(TEST_ABHA)

    with pytest.raises(OtpRejected) as raised:
        abha.verify_otp(txn_id, "654321")

    assert isinstance(raised.value, GatewayError)
    assert raised.value.status == 200  # ABDM answers a wrong OTP with 200, authResult failed
    assert raised.value.message == WRONG_OTP_MESSAGE
    assert not raised.value.retryable
    assert raised.value.request_id == gateway.received[-1].headers["request-id"]
    assert abha.verify_otp(txn_id, TEST_OTP).abha_number == TEST_ABHA


def test_an_expired_transaction_refuses_even_the_right_otp(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    txn_id = abha.request_otp(TEST_ABHA)
    gateway.expire_abha_txns()

    with pytest.raises(OtpRejected, match="expired or incorrect"):
        abha.verify_otp(txn_id, TEST_OTP)


def test_a_transaction_dies_after_its_time() -> None:
    with (
        FakeAbdmGateway(abha_txn_ttl=0.2) as gateway,
        GatewayClient(gateway.url, gateway.client_id, gateway.client_secret) as client,
        AbhaClient(client, abha_url=gateway.url + ABHA_PREFIX) as abha,
    ):
        txn_id = abha.request_otp(TEST_ABHA)
        time.sleep(0.3)
        with pytest.raises(OtpRejected):
            abha.verify_otp(txn_id, TEST_OTP)


def test_an_otp_verifies_once(abha: AbhaClient) -> None:
    txn_id = abha.request_otp(TEST_ABHA)
    abha.verify_otp(txn_id, TEST_OTP)

    with pytest.raises(OtpRejected):
        abha.verify_otp(txn_id, TEST_OTP)


def test_an_unknown_transaction_is_a_gateway_error_not_a_wrong_otp(abha: AbhaClient) -> None:
    with pytest.raises(GatewayError) as raised:
        abha.verify_otp("8c9f7c52-0000-4000-8000-000000000000", TEST_OTP)

    assert not isinstance(raised.value, OtpRejected)
    assert raised.value.code == "ABDM-1017"


def test_an_abha_number_no_account_has(gateway: FakeAbdmGateway, abha: AbhaClient) -> None:
    unknown = luhn_complete("9100000000001")
    with pytest.raises(GatewayError) as raised:
        abha.request_otp(unknown)

    assert (raised.value.status, raised.value.code) == (404, "ABDM-1114")
    assert gateway.abha_plaintexts == [dashed(unknown)]


# ---------------------------------------------------------------------- nothing sent


@pytest.mark.parametrize(
    "number",
    [
        "",
        "1234",
        "91-1234-5678-901",  # 13 digits
        "91-1234-5678-90123",  # 15 digits
        "91-1234-5678-901X",
        "९१-१२३४-५६७८-९०१५",  # Devanagari digits are digits to Python, not to ABDM
        TEST_ABHA[:-1] + str((int(TEST_ABHA[-1]) + 1) % 10),  # the check digit is wrong
    ],
)
def test_an_invalid_abha_number_is_refused_before_any_call(
    gateway: FakeAbdmGateway, abha: AbhaClient, number: str
) -> None:
    with pytest.raises(ValueError, match="ABHA number"):
        abha.request_otp(number)

    assert gateway.sessions == []
    assert gateway.received == []


@pytest.mark.parametrize("otp", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"])
def test_a_malformed_otp_is_refused_before_any_call(
    gateway: FakeAbdmGateway, abha: AbhaClient, otp: str
) -> None:
    with pytest.raises(ValueError, match="6-digit OTP"):
        abha.verify_otp("8c9f7c52-0000-4000-8000-000000000000", otp)
    assert gateway.received == []


def test_the_abha_number_to_pick_is_checked_before_any_call(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    with pytest.raises(ValueError, match="ABHA number"):
        abha.verify_otp("8c9f7c52-0000-4000-8000-000000000000", TEST_OTP, abha_number="12")
    assert gateway.received == []


# ---------------------------------------------------------------------- the accounts


def test_a_masked_number_is_matched_to_the_one_asked_for(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    gateway.add_abha_account(TEST_ABHA, ABHANumber="91-XXXX-XXXX-" + TEST_ABHA[-4:])

    txn_id = abha.request_otp(TEST_ABHA)
    verified = abha.verify_otp(txn_id, TEST_OTP, abha_number=TEST_ABHA)

    assert verified.abha_number == TEST_ABHA


def test_a_masked_number_nobody_named_stays_unknown(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    gateway.add_abha_account(TEST_ABHA, ABHANumber="91-XXXX-XXXX-" + TEST_ABHA[-4:])
    verified = abha.verify_otp(abha.request_otp(TEST_ABHA), TEST_OTP)
    assert verified.abha_number is None


def test_several_accounts_need_the_number_to_pick(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    other = luhn_complete("9100000000002")
    first = gateway.add_abha_account(TEST_ABHA)
    second = gateway.add_abha_account(other, name="Ravi Verma", preferredAbhaAddress="ravi@sbx")
    both = {
        "txnId": "t",
        "authResult": "success",
        "message": "OTP verified successfully",
        "token": "x",
        "expiresIn": 300,
        "accounts": [first, second],
    }

    txn_id = abha.request_otp(TEST_ABHA)
    gateway.answer_next(json_answer(200, both))
    with pytest.raises(GatewayError, match="proves 2 accounts"):
        abha.verify_otp(txn_id, TEST_OTP)

    gateway.answer_next(json_answer(200, both))
    picked = abha.verify_otp(txn_id, TEST_OTP, abha_number=other)
    assert (picked.abha_number, picked.name, picked.abha_address) == (
        other,
        "Ravi Verma",
        "ravi@sbx",
    )

    gateway.answer_next(json_answer(200, {**both, "accounts": [second]}))
    with pytest.raises(GatewayError, match="do not include that ABHA number"):
        abha.verify_otp(txn_id, TEST_OTP, abha_number=TEST_ABHA)


def test_an_answer_without_accounts_is_an_error(gateway: FakeAbdmGateway, abha: AbhaClient) -> None:
    txn_id = abha.request_otp(TEST_ABHA)
    gateway.answer_next(json_answer(200, {"txnId": txn_id, "authResult": "success"}))

    with pytest.raises(GatewayError, match="lists no ABHA account"):
        abha.verify_otp(txn_id, TEST_OTP)


def test_the_profile_shape_of_a_birth_date_is_read_too(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    gateway.add_abha_account(
        TEST_ABHA,
        dob=None,
        name=None,
        firstName="Asha",
        lastName="Verma",
        yearOfBirth="1990",
        monthOfBirth="8",
        dayOfBirth="14",
        mobile="******7890",
    )
    verified = abha.verify_otp(abha.request_otp(TEST_ABHA), TEST_OTP)

    assert (verified.name, verified.dob, verified.mobile) == (
        "Asha Verma",
        date(1990, 8, 14),
        "******7890",
    )


def test_only_a_year_of_birth(gateway: FakeAbdmGateway, abha: AbhaClient) -> None:
    gateway.add_abha_account(TEST_ABHA, dob=None, yearOfBirth=1990)
    verified = abha.verify_otp(abha.request_otp(TEST_ABHA), TEST_OTP)
    assert (verified.dob, verified.year_of_birth) == (None, 1990)


def test_the_request_answer_must_carry_a_txn_id(gateway: FakeAbdmGateway, abha: AbhaClient) -> None:
    abha.public_key()
    gateway.answer_next(json_answer(200, {"message": "OTP sent"}))
    with pytest.raises(GatewayError, match="no txnId"):
        abha.request_otp(TEST_ABHA)


# ---------------------------------------------------------------------- the encryption


def test_the_fake_refuses_another_padding_as_the_sandbox_does(
    gateway: FakeAbdmGateway, client: GatewayClient, abha: AbhaClient
) -> None:
    key = abha.public_key()
    body = {
        "scope": ["abha-login", "mobile-verify"],
        "loginHint": "abha-number",
        "otpSystem": "abdm",
    }
    wrong = {
        "pkcs1v15": key.encrypt(dashed(TEST_ABHA).encode(), padding.PKCS1v15()),
        "oaep-sha256": key.encrypt(
            dashed(TEST_ABHA).encode(),
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        ),
    }
    for ciphertext in wrong.values():
        login_id = base64.b64encode(ciphertext).decode()
        with pytest.raises(GatewayError) as raised:
            client.post(ABHA_PREFIX + REQUEST_OTP_PATH, {**body, "loginId": login_id})
        assert raised.value.status == 400
        assert '"loginId": "Invalid LoginId"' in raised.value.message

    bare = encrypt_for_abha(key, TEST_ABHA)  # the right padding, but no dashes
    with pytest.raises(GatewayError) as raised:
        client.post(ABHA_PREFIX + REQUEST_OTP_PATH, {**body, "loginId": bare})
    assert '"loginId": "LoginId is invalid"' in raised.value.message


def test_encrypt_for_abha_is_oaep_sha1_in_base64() -> None:
    private = cached_key("abha")
    public = private.public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forms: list[str | bytes | rsa.RSAPublicKey] = [
        base64.b64encode(der).decode(),  # as ABDM publishes it
        base64.encodebytes(der),  # wrapped at 76 characters
        pem.decode(),
        pem,
        public,
    ]
    for form in forms:
        sealed = encrypt_for_abha(form, "91-1234-5678-9015")
        assert private.decrypt(base64.b64decode(sealed), oaep_sha1()) == b"91-1234-5678-9015"

    # OAEP is randomised: the same text never encrypts the same way twice.
    assert encrypt_for_abha(public, "123456") != encrypt_for_abha(public, "123456")


def test_a_published_certificate_is_read_for_its_key() -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    private = cached_key("abha")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "abha")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2034, 1, 1, tzinfo=dt.UTC))
        .sign(private, hashes.SHA256())
    )
    for form in (
        certificate.public_bytes(serialization.Encoding.PEM).decode(),
        base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode(),
    ):
        sealed = encrypt_for_abha(form, "123456")
        assert private.decrypt(base64.b64decode(sealed), oaep_sha1()) == b"123456"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("not base64 at all!", "not an RSA public key"),
        (base64.b64encode(b"random bytes").decode(), "not an RSA public key"),
        (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode(),
            "must be an RSA key",
        ),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode(),
            "1024 bits is too small",
        ),
    ],
)
def test_keys_abdm_would_not_publish_are_refused(key: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        load_public_key(key)


def test_an_unknown_published_algorithm_stops_the_client(
    gateway: FakeAbdmGateway, abha: AbhaClient
) -> None:
    der = (
        cached_key("abha")
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    gateway.answer_next(
        json_answer(
            200,
            {
                "publicKey": base64.b64encode(der).decode(),
                "encryptionAlgorithm": "RSA/ECB/OAEPWithSHA-256AndMGF1Padding",
            },
        )
    )
    with pytest.raises(GatewayError, match="OAEPWithSHA-256"):
        abha.request_otp(TEST_ABHA)
    assert gateway.abha_txns == {}


def test_a_certificate_answer_without_a_key(gateway: FakeAbdmGateway, abha: AbhaClient) -> None:
    gateway.answer_next(json_answer(200, {"certificate": "?"}))
    with pytest.raises(GatewayError, match="no publicKey"):
        abha.public_key()


def test_a_forgotten_key_is_fetched_again(gateway: FakeAbdmGateway, abha: AbhaClient) -> None:
    abha.public_key()
    abha.forget_public_key()
    abha.public_key()
    assert len([a for a in gateway.received if a.path.endswith(CERTIFICATE_PATH)]) == 2


def test_an_unknown_otp_system_is_refused(client: GatewayClient) -> None:
    with pytest.raises(ValueError, match="otp_system"):
        AbhaClient(client, otp_system="sms")  # type: ignore[arg-type]
