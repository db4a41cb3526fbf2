"""Running it: settings, database, migrations, scheduler, metrics, logs, the clock, the CLI, wiring."""
