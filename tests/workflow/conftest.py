"""The `smk` and `demo_run` fixtures live in tests/conftest.py, so tests/workflow and tests/faults share one
reference run of the demo DAG per session."""
