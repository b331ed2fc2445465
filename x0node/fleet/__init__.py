"""Fleet side: what operators run centrally for many routers (docs/fleet.md). Scrape targets from the
mesh's view of its nodes, Grafana dashboards generated from code, and the checks that keep dashboards,
rules and the Helm chart consistent with what x0node exports. Nothing here runs in the daemon."""
