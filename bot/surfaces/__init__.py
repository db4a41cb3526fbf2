"""What people see: Block Kit builders (pure), /aop commands, App Home, the daily digest."""
