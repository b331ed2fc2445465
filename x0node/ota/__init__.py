"""Over-the-air updates: signed bundles, RAUC A/B installs, the health gate, mesh distribution, rollouts.

Decision modules (sans-I/O, take `now` and a seeded rng): manifest.py, fetch.py, rollout.py, boot.py.
Adapters: keys.py, bundle.py, staging.py, rauc.py, transfer.py, service.py, cli.py. See docs/ota.md.
"""
