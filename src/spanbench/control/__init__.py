"""The control tables: how the orchestrator and the workers talk without talking to each other."""
