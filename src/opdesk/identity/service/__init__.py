"""Identity use cases: sign-in (staff password + TOTP, patient phone OTP), devices, users.

Refusals that must leave a trace (failed password, wrong OTP, lockout) are *returned*
as :class:`Refusal`, not raised: raising would roll back the very counter and audit
event that make the next attempt slower. Routes turn them into responses while the
transaction still commits.
"""

from opdesk.identity.service._common import (
    AUTH_EVENTS,
    GENERIC_OTP_FAILURE,
    GENERIC_SIGN_IN_FAILURE,
    MFA_FAILS_SESSION,
    OTP_MAX_TRIES,
    OTP_SENDS_DEVICE,
    OTP_SENDS_IP,
    OTP_SENDS_PHONE,
    OTP_SENDS_PHONE_DAY,
    OTP_TTL,
    PASSWORD_FAILS_ACCOUNT,
    PASSWORD_FAILS_DEVICE,
    PASSWORD_FAILS_IP,
    RECOVERY_CODES,
    SMS_BUDGET_SPENT,
    SMS_SENDS_PREFIX,
    Identity,
    Keys,
    Refusal,
    SignedIn,
    get_user,
)
from opdesk.identity.service.account import change_password, sign_out
from opdesk.identity.service.admin import (
    approve_device,
    create_user,
    get_device,
    revoke_device,
    set_mfa_required_roles,
    update_user,
)
from opdesk.identity.service.mfa import (
    Enrolment,
    begin_mfa_enrolment,
    confirm_mfa_enrolment,
    may_enrol,
    reset_mfa,
    stage_of,
    verify_mfa,
)
from opdesk.identity.service.otp import (
    PhoneProof,
    patient_sign_in,
    request_otp,
    sms_budget_used,
    sweep_otp_tokens,
    verify_otp,
)
from opdesk.identity.service.password_link import (
    LINK_GONE,
    LinkHolder,
    create_first_admin,
    issue_password_link,
    password_link_holder,
    set_password_with_link,
)
from opdesk.identity.service.signin import browser_label, staff_sign_in

__all__ = [
    "AUTH_EVENTS",
    "GENERIC_OTP_FAILURE",
    "GENERIC_SIGN_IN_FAILURE",
    "LINK_GONE",
    "MFA_FAILS_SESSION",
    "OTP_MAX_TRIES",
    "OTP_SENDS_DEVICE",
    "OTP_SENDS_IP",
    "OTP_SENDS_PHONE",
    "OTP_SENDS_PHONE_DAY",
    "OTP_TTL",
    "PASSWORD_FAILS_ACCOUNT",
    "PASSWORD_FAILS_DEVICE",
    "PASSWORD_FAILS_IP",
    "RECOVERY_CODES",
    "SMS_BUDGET_SPENT",
    "SMS_SENDS_PREFIX",
    "Enrolment",
    "Identity",
    "Keys",
    "LinkHolder",
    "PhoneProof",
    "Refusal",
    "SignedIn",
    "approve_device",
    "begin_mfa_enrolment",
    "browser_label",
    "change_password",
    "confirm_mfa_enrolment",
    "create_first_admin",
    "create_user",
    "get_device",
    "get_user",
    "issue_password_link",
    "may_enrol",
    "password_link_holder",
    "patient_sign_in",
    "request_otp",
    "reset_mfa",
    "revoke_device",
    "set_mfa_required_roles",
    "set_password_with_link",
    "sign_out",
    "sms_budget_used",
    "staff_sign_in",
    "stage_of",
    "sweep_otp_tokens",
    "update_user",
    "verify_mfa",
    "verify_otp",
]
