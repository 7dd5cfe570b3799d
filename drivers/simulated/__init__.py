"""steerlab package."""
