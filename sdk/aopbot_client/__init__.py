"""aopbot's agent SDK: escalate to a human in Slack, wait for the decision, gate tools behind it.

    from aopbot_client import AopClient

    aop = AopClient()  # AOP_URL, AOP_TOKEN

    @aop.require_approval(process_id="support_refunds_tier2_v3", summary="Refund a customer",
                          tools=["billing.refund"])
    def refund(ticket_id: str, amount: int) -> str: ...

See docs/sdk.md in the aopbot repository.
"""

from aopbot_client.callbacks import verify_callback
from aopbot_client.client import AopClient, AsyncAopClient, __version__
from aopbot_client.errors import (
    AcknowledgedOnly,
    AopConnectionError,
    AopError,
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalMismatch,
    ApprovalRejected,
    ApprovalTimeout,
    BadRequest,
    BodyTooLarge,
    Conflict,
    FieldError,
    Forbidden,
    InvalidRequest,
    InvalidSignature,
    NotFound,
    ProcessPaused,
    ProcessRetired,
    RateLimited,
    ServerError,
    Unauthorized,
)
from aopbot_client.models import (
    Approval,
    ChangelogEntry,
    Escalation,
    EscalationFields,
    PolicyCheck,
    Process,
    RecordFields,
    action_hash,
)

__all__ = [
    "AcknowledgedOnly", "AopClient", "AopConnectionError", "AopError", "Approval", "ApprovalCancelled",
    "ApprovalDenied", "ApprovalExpired", "ApprovalMismatch", "ApprovalRejected", "ApprovalTimeout",
    "AsyncAopClient", "BadRequest", "BodyTooLarge", "ChangelogEntry", "Conflict", "Escalation", "EscalationFields",
    "FieldError", "Forbidden", "InvalidRequest", "InvalidSignature", "NotFound", "PolicyCheck", "Process",
    "ProcessPaused", "ProcessRetired", "RateLimited", "RecordFields", "ServerError", "Unauthorized", "__version__",
    "action_hash", "verify_callback",
]
