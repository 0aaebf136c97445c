"""Makes the source tree importable for the tests (egopress_core, egopress_ros sources)."""
