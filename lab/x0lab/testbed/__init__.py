"""Namespace meshes for tests, benchmarks and demos."""
