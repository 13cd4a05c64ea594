"""The audit trail's records outside the Kafka edge: the signing key (``TWINMON_AUDIT_KEY``) and the record of a
CLI command. Signing and chaining: ``feed.audit_chain``; the topic itself: ``feed.kafka``."""

from __future__ import annotations

import getpass
import time
import uuid

from feed.models import AuditRecord
from streams.settings import Settings
from twin_state.errors import TwinmonError


class AuditKeyMissing(TwinmonError):
    def __init__(self) -> None:
        super().__init__("TWINMON_AUDIT_KEY is not set: audit records are signed with it (at least 32 characters, "
                         "the same for the feed, the CLI and `twinmon audit verify`; e.g. `openssl rand -hex 32`)")


def audit_key(settings: Settings) -> bytes:
    if settings.audit_key is None:
        raise AuditKeyMissing()
    return settings.audit_key.get_secret_value().encode()


def cli_record(user: str | None, team: str, action: str, patient_id: str, alert_id: str | None = None,
               reason: str = "") -> AuditRecord:
    """A record of a CLI command: ``user`` as given on the command line (not verified; default the OS account),
    and the OS account."""
    os_user = getpass.getuser()
    return AuditRecord(id=uuid.uuid4().hex, at=int(time.time() * 1000), user=user or os_user, team=team,
                       action=action,  # validated by the model
                       patient_id=patient_id, alert_id=alert_id, reason=reason, source="cli",
                       os_user=os_user)
