"""The agent HTTP API: routes, request schemas, limits; maps domain errors to status codes."""
