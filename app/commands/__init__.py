"""steerlab sub-commands, one module each."""
