"""x0lab: development tools for x0tta6bl4, never installed on routers.

Packages: testbed/ (namespace meshes of real daemons, the fault lab, measurements), anomaly/ (the seeded
scenario generator, detection metrics, `x0node model eval`). x0node imports x0lab only lazily, from the
command line (`x0node testbed`, `x0node model eval`), and says so when it is missing.
"""

__version__ = "0.1.0"
