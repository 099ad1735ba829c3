"""503 answers when the database cannot answer (``opdesk.faults`` says which fault).

The API gets a problem body and ``Retry-After``. A person gets words they can act on: a
page they opened loads again by itself once OPDesk is back; a form they sent says
whether it was saved, that what they typed is still in the form, and when to send it
again; an htmx request (a search, a dialog) leaves the page as it is, with a line at the
top that clears itself when OPDesk is back.
"""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.dependencies.utils import get_flat_params

from opdesk import metrics
from opdesk.faults import OUTAGE, Classified, Fault, outcome_unknown
from opdesk.web.deps import SAFE_METHODS, services
from opdesk.web.middleware import route_template

RETRY_AFTER = {Fault.UNAVAILABLE: 5, Fault.BUSY: 2, Fault.SLOW: 2}
TITLES = {
    Fault.UNAVAILABLE: "OPDesk is restarting",
    Fault.BUSY: "OPDesk is busy",
    Fault.SLOW: "That took too long",
}


# What happened, for a program's log (the API) and for a person (a page): a receptionist
# needs neither "database" nor "try again" under a page that reloads itself.
SAID = {
    Fault.UNAVAILABLE: "OPDesk cannot reach its database for a moment (it may be restarting)",
    Fault.BUSY: "OPDesk is busy with other requests right now",
    Fault.SLOW: "This took too long and was stopped",
}
SAID_TO_PEOPLE = {
    **SAID,
    Fault.UNAVAILABLE: "OPDesk is restarting and will be back in a few seconds",
    Fault.BUSY: "OPDesk is very busy at the moment",
}


def detail_of(request: Request, classified: Classified, *, to_people: bool = False) -> str:
    """What happened, and what the caller should do, in one or two sentences. A page
    says what to do itself (it reloads, or says to use Back), so ``to_people`` leaves out
    the API's "try again".
    """
    said = (SAID_TO_PEOPLE if to_people else SAID)[classified.fault]
    if request.method in SAFE_METHODS:
        return f"{said}." if to_people else f"{said}. Please try again in a few seconds."
    if not (classified.fault == Fault.UNAVAILABLE and outcome_unknown()):
        again = "" if to_people else "; please send it again in a few seconds"
        return f"{said}. Nothing was saved{again}."
    said = (
        "OPDesk restarted while saving this"
        if to_people
        else "OPDesk lost its database connection while saving this"
    ) + ", so it may or may not have been saved"
    if request.headers.get("idempotency-key") and takes_idempotency_key(request):
        return (
            f"{said}. Send it again with the same Idempotency-Key once OPDesk is back: "
            "the key makes sure it is saved only once."
        )
    return f"{said}. Check whether it was saved before you send it again."


def takes_idempotency_key(request: Request) -> bool:
    """Whether this route honours an ``Idempotency-Key`` (it declares the header); on
    any other, the key is ignored and a retry would act twice.
    """
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return False
    return any(p.alias.lower() == "idempotency-key" for p in get_flat_params(dependant))


def answer(request: Request, classified: Classified) -> Response:
    """The 503 for a request the database could not serve."""
    from opdesk.web.problems import problem, wants_json

    route = route_of(request)
    OUTAGE.refused(classified, route)
    metrics.UNAVAILABLE.labels(classified.fault.value).inc()
    retry = str(RETRY_AFTER[classified.fault])
    headers = {"Retry-After": retry}
    if wants_json(request):
        said = detail_of(request, classified)
        refused = problem(
            request, 503, "Service unavailable", said, extra={"fault": classified.fault.value}
        )
        refused.headers.update(headers)
        return refused
    pages = services(request).pages
    context = {
        "title": TITLES[classified.fault],
        "detail": detail_of(request, classified, to_people=True),
        "retry": retry,
        "reloads": request.method in SAFE_METHODS,
        # No links: signed-in or not cannot be told while the database is away, and a
        # "Staff sign-in" link would only make a receptionist think she was signed out.
        "nav": [],
    }
    if request.headers.get("hx-request"):
        # A part of the page asked: leave the page (and what was typed) as it is, and put
        # the line at the top instead (htmx swaps a 503 where HX-Retarget says).
        headers |= {"HX-Retarget": "#outage", "HX-Reswap": "innerHTML"}
        template = "unavailable_line.html"
    else:
        template = "unavailable.html"
    response = pages.render(request, template, context, status_code=503)
    response.headers.update(headers)
    return response


def route_of(request: Request) -> str:
    return route_template(request.scope)
