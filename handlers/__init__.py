"""Slack listeners. register() only wires ids to callbacks; the work is in the modules."""

from slack_bolt import App

from handlers import actions, commands, events, qa, views
from handlers.common import skip_slack_retries


def register(app: App) -> None:
    app.use(skip_slack_retries)
    app.action(actions.APPROVE)(actions.on_approve)
    app.action(actions.REJECT)(actions.on_reject)
    app.action(actions.ACK)(actions.on_acknowledge)
    app.view(views.REJECT_MODAL)(views.on_reject_submitted)
    app.action(qa.QA_OK)(qa.on_qa_ok)
    app.action(qa.QA_WRONG)(qa.on_qa_wrong)
    app.view(qa.QA_WRONG_MODAL)(qa.on_qa_wrong_submitted)
    app.command("/aop")(commands.on_aop)
    app.event("app_home_opened")(events.on_app_home_opened)
