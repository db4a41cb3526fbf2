"""An agent process for the crash test: one decorated refund, its run appended to a file.

usage: python -m tests.sdk.refund_agent_proc RAN_FILE TICKET AMOUNT   (AOP_URL, AOP_TOKEN from the environment)
"""

from __future__ import annotations

import json
import logging
import sys

from aopbot_client import AopClient, ApprovalDenied


def main(ran_file: str, ticket_id: str, amount: str) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    aop = AopClient()

    @aop.require_approval(process_id="refunds", summary=lambda ticket_id, amount: f"Refund ${amount} on {ticket_id}",
                          tools=["billing.refund"])
    def refund(ticket_id: str, amount: int) -> str:
        with open(ran_file, "a", encoding="utf-8") as f:
            f.write(json.dumps([ticket_id, amount]) + "\n")
        return f"refunded ${amount} on {ticket_id}"

    try:
        print(refund(ticket_id, int(amount)), flush=True)
    except ApprovalDenied as denied:
        print(f"denied: {denied}", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
