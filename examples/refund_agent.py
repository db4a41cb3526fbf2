"""A small refund agent. Refunds up to $50 it makes alone and records in the change log; bigger ones
go through `require_approval`, so each waits for a human to click Approve in Slack.

Against a local bot (`make run`; with no Slack credentials it serves the sandbox):

    make run                                    # in one terminal
    export AOP_URL=http://127.0.0.1:3000        # in another
    export AOP_TOKEN=$(.venv/bin/aopbot token create --process support_refunds_tier2_v3 \\
                         --name refund-agent | sed -n 's/^token: //p')
    .venv/bin/python examples/refund_agent.py

Then open http://127.0.0.1:3000/sandbox, act as the escalation owner (U0ESCOWNER) and Approve or
Reject each refund in #support-refunds. Kill the agent while it waits and start it again: it picks
up the same escalations (nobody is paged twice) and refunds once they are approved.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from aopbot_client import AopClient, ApprovalDenied

PROCESS = os.environ.get("AOP_PROCESS", "support_refunds_tier2_v3")
LIMIT_USD = 50  # the agent's own limit: above it, a human decides


@dataclass
class Ticket:
    id: str
    amount: int
    note: str


TICKETS = [
    Ticket("118", 20, "Duplicate charge"),
    Ticket("123", 120, "Customer says the order never arrived."),
    Ticket("131", 300, "Refund requested 95 days after delivery."),
]

aop = AopClient(model="example:refund-agent")  # AOP_URL, AOP_TOKEN


def billing_refund(ticket_id: str, amount: int) -> str:
    """Stands in for the billing system's API."""
    return f"rf_{ticket_id}_{amount}"


@aop.require_approval(
    process_id=PROCESS,
    summary=lambda ticket_id, amount, note: f"Refund ${amount} on ticket {ticket_id}",
    tools=["billing.refund"],
    message=lambda ticket_id, amount, note: note,
    reason="policy_check_failed",
    policy_checks=lambda ticket_id, amount, note: [
        {"name": f"refund_limit_{LIMIT_USD}", "passed": False, "detail": f"{amount} > {LIMIT_USD}"}],
)
def refund(ticket_id: str, amount: int, note: str) -> str:
    return billing_refund(ticket_id, amount)


def work(ticket: Ticket) -> str:
    if ticket.amount <= LIMIT_USD:  # within the agent's limit: act, then record it
        reference = billing_refund(ticket.id, ticket.amount)
        aop.record(PROCESS, f"refunded ${ticket.amount} on ticket {ticket.id}", tools_invoked=["billing.refund"],
                   inputs={"ticket_id": ticket.id, "amount": ticket.amount},
                   policy_checks=[f"refund_limit_{LIMIT_USD}"])
        return f"ticket {ticket.id}: refunded ${ticket.amount} alone ({reference})"
    print(f"ticket {ticket.id}: ${ticket.amount} is over ${LIMIT_USD}; waiting for a human in Slack …", flush=True)
    try:
        reference = refund(ticket.id, ticket.amount, ticket.note)
    except ApprovalDenied as denied:  # rejected, expired or cancelled: the refund did not happen
        return f"ticket {ticket.id}: not refunded. {denied}"
    return f"ticket {ticket.id}: refunded ${ticket.amount} after approval ({reference})"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with aop:
        for ticket in TICKETS:
            print(work(ticket), flush=True)


if __name__ == "__main__":
    main()
