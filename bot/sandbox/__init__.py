"""The sandbox: a Slack workspace served by aopbot itself (no Slack credentials needed), and the page
at /sandbox that shows it. Its workspace is also the Slack stand-in every test runs against."""
