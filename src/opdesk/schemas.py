"""Base classes and shared field types for the JSON API (camelCase, as in the seed)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from opdesk import validation


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        from_attributes=True,
        str_strip_whitespace=True,
        extra="forbid",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        """PostgreSQL text cannot hold NUL; refuse it here rather than fail at the database."""
        if _has_nul(data):
            raise ValueError("text must not contain NUL (0x00) characters")
        return data


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response of the API."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = Field(default=None, alias="requestId")
    errors: list[dict[str, str]] | None = None
    # On a 503: "unavailable" (the database is restarting or gone), "busy" (every
    # connection in use) or "slow" (a statement ran past the statement timeout).
    fault: str | None = None

    model_config = ConfigDict(populate_by_name=True)


PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}

PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"description": description, "content": PROBLEM_CONTENT}
    for status, description in (
        (401, "Sign-in required"),
        (403, "Not allowed"),
        (404, "Not found"),
        (409, "Conflict with the current state"),
        (422, "Invalid input; `errors` names each field and the reason"),
        (503, "Briefly unavailable; `fault` says why, `Retry-After` when to send it again"),
    )
}

PhoneE164 = Annotated[str, AfterValidator(validation.phone_e164)]
Gstin = Annotated[str, AfterValidator(validation.gstin)]
TimeZone = Annotated[str, AfterValidator(validation.timezone)]
MobileE164 = Annotated[str, AfterValidator(validation.mobile_e164)]
Email = Annotated[str, AfterValidator(validation.email)]
Slug = Annotated[str, Field(min_length=3, max_length=40, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
Pincode = Annotated[str, Field(pattern=r"^[1-9][0-9]{5}$")]
# Up to three characters, so an invoice number stays within GST's sixteen (money.invoice_number).
InvoicePrefix = Annotated[str, Field(min_length=1, max_length=3, pattern=r"^[A-Z0-9][A-Z0-9-]*$")]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
