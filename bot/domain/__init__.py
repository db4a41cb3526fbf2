"""The domain: escalations and their rules, the registry, the change log, processes, scorecards.
Database only; nothing here calls Slack or makes an HTTP request."""
