"""`python -m bot …` runs the aopbot command line."""

from bot.ops.cli import main

raise SystemExit(main())
