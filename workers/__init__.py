"""The job engines behind the jobs port (``app.jobs``): Procrastinate on PostgreSQL,
the in-process scheduler on SQLite, the catalog of work both run, and hourly housekeeping."""
