"""Events: the App Home tab is rendered fresh each time someone opens it."""

from __future__ import annotations

from bot.surfaces.home import home_view
from handlers.common import log, services


def on_app_home_opened(event, client, context):
    if event.get("tab") not in (None, "home"):
        return
    publish_home(services(context), client, event["user"])


def publish_home(svc, client, user: str) -> None:
    try:
        client.views_publish(user_id=user, view=home_view(svc, user))
    except Exception:
        log.exception("could not publish App Home for %s", user)
