"""aopbot: the Slack escalation bridge for agent-operated processes."""
