"""The shipped lab configurations and run plans, as package data (read with importlib.resources;
``configs/`` at the top of a checkout is a link to this directory)."""
