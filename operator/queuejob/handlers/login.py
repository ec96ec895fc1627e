"""Login: kopf's own credentials (pykube-ng's, else the ``kubernetes`` client's: in-cluster
service account or kubeconfig), in a session whose requests in flight are bounded by
``QUEUEJOB_API_REQUESTS`` (:mod:`queuejob.apisession`)."""

from __future__ import annotations

from typing import Any

import kopf

from queuejob import apisession
from queuejob import settings as qj_settings


@kopf.on.login(id="login")
async def login(
    settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any
) -> kopf.AiohttpSession | None:
    """The first credentials kopf's fallback logins find, in a limited session."""
    limit = qj_settings.from_env().api_requests
    info = kopf.login_via_pykube(logger=logger, settings=settings) or kopf.login_via_client(
        logger=logger, settings=settings
    )
    if info is None:
        return None
    return apisession.limited_session(info, limit)
