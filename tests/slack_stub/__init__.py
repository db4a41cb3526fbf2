from tests.slack_stub.server import SlackStub

__all__ = ["SlackStub"]
