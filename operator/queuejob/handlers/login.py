"""Login: kopf's own credentials (pykube-ng's, else the ``kubernetes`` client's: in-cluster
service account or kubeconfig), in a session whose requests in flight are bounded by
``QUEUEJOB_API_REQUESTS`` (:mod:`queuejob.apisession`)."""

from __future__ import annotations

from typing import Any

import kopf

from queuejob import apisession
from queuejob import settings as qj_settings

#: kopf's own fallback logins, in kopf's order; the first that finds credentials is used.
LOGINS = (kopf.login_via_pykube, kopf.login_via_client)


@kopf.on.login(id="login")
async def login(
    settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any
) -> kopf.AiohttpSession | None:
    """The credentials of the first of :data:`LOGINS` that finds some, in a limited session;
    None (kopf then stops: no credentials) if none does."""
    limit = qj_settings.from_env().api_requests
    for find in LOGINS:
        try:
            info = find(logger=logger, settings=settings)
        except kopf.LoginError as exc:
            logger.debug(f"{find.__name__}: {exc}")
            continue
        if info is not None:
            return apisession.limited_session(info, limit)
    return None
