"""Background jobs (nightly rendering comes with the maps issue)."""
