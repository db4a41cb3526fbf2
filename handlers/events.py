"""Events: the App Home tab is rendered fresh each time someone opens it."""

from __future__ import annotations

from bot.domain import governance, processes
from bot.surfaces.commands import ITEM_LIMIT
from bot.surfaces.home import home_view
from handlers.common import log, reply_later, services


def on_app_home_opened(event, client, context):
    """Returns at once (Bolt acks the event when it does); the view is published on a reply thread."""
    if event.get("tab") not in (None, "home"):
        return
    svc, user = services(context), event["user"]
    reply_later(lambda: publish_home(svc, client, user))


def publish_home(svc, client, user: str) -> None:
    try:
        data = processes.home_of(svc.db, svc.registry, user, svc.flows.directory.resolve, ITEM_LIMIT)
        data = governance.with_slo_cards(svc.db, data)
        client.views_publish(user_id=user, view=home_view(data, svc.flows.permalink))
    except Exception:
        log.exception("could not publish App Home for %s", user)
