"""Imports every domain's models so ``Base.metadata`` knows all tables."""

from __future__ import annotations


def load_all_models() -> None:
    from opdesk import idempotency as _idempotency  # noqa: F401
    from opdesk.abdm import models as _abdm  # noqa: F401
    from opdesk.audit import models as _audit  # noqa: F401
    from opdesk.automation import models as _automation  # noqa: F401
    from opdesk.billing import models as _billing  # noqa: F401
    from opdesk.clinical import models as _clinical  # noqa: F401
    from opdesk.consents import models as _consents  # noqa: F401
    from opdesk.documents import models as _documents  # noqa: F401
    from opdesk.identity import models as _identity  # noqa: F401
    from opdesk.notifications import models as _notifications  # noqa: F401
    from opdesk.patients import models as _patients  # noqa: F401
    from opdesk.reports import models as _reports  # noqa: F401
    from opdesk.scheduling import models as _scheduling  # noqa: F401
    from opdesk.security import throttle as _throttle  # noqa: F401
    from opdesk.tenancy import models as _tenancy  # noqa: F401
