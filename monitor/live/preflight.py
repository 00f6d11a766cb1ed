"""Start-up check of the broker connection: reachable, and the credentials accepted.

Who calls what: :func:`monitor.live.worker.run_worker` and :func:`monitor.live.topics.
ensure_topics` await :func:`check_broker` before anything else talks to Kafka.

Why: left to itself, Faust (through aiokafka) logs a refused SASL login and retries forever, so
a worker with a wrong password looked alive and did nothing. aiokafka's own clients also fold
the refusal into a generic "Unable to bootstrap" error; a bare connection (``create_conn``)
raises the broker's real answer, which is what an operator needs to read. A refusal is final
(retrying a wrong password cannot help); an unreachable broker is retried until ``timeout``,
because in compose and Kubernetes the worker often starts before Kafka.
"""

from __future__ import annotations

import asyncio

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from monitor.errors import ConfigError
from monitor.live.config import Settings

_REFUSED = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)


async def check_broker(settings: Settings, timeout: float) -> None:
    """Returns once one bootstrap server accepted a connection with the configured security.

    Raises ConfigError at once when a broker refuses the credentials, and after ``timeout``
    seconds when none could be reached; both messages name the setting to fix.
    """
    security = settings.aiokafka_security()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: BaseException | None = None
    while True:
        for server in settings.bootstrap_servers.split(","):
            host, _, port = server.rpartition(":")
            try:
                conn = await create_conn(
                    host or server, int(port or 9092), request_timeout_ms=5000, **security
                )
            except _REFUSED as exc:
                raise ConfigError(
                    f"the broker {server} refused the credentials of SASL user "
                    f"{settings.sasl_username!r} ({settings.sasl_mechanism or 'PLAIN'}): {exc}; "
                    "check SLA_SASL_USERNAME, SLA_SASL_PASSWORD and SLA_SASL_MECHANISM"
                ) from None
            except (TimeoutError, OSError, KafkaError) as exc:
                last = exc
                continue
            conn.close()
            return
        if loop.time() >= deadline:
            raise ConfigError(
                f"cannot reach the broker {settings.bootstrap_servers} "
                f"({settings.security_protocol}) within {timeout:g}s: {last}; check SLA_BROKER "
                "and SLA_SECURITY_PROTOCOL"
            )
        await asyncio.sleep(1.0)
