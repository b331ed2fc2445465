"""The x0node daemon: config, services, the loop that drives the routing core, and their wiring."""
