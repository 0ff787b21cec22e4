"""Every task and every periodic work of ``app/`` that a job engine runs.

A feature declares its work (``app.jobs.port``); adding it here puts it on both
engines: Procrastinate (``hitmap worker``) and the in-process scheduler (``hitmap
serve`` on SQLite).
"""

from __future__ import annotations

from app.jobs.port import Periodic, Task
from app.maps import tasks as maps
from app.retention import tasks as retention

TASKS: tuple[Task, ...] = (maps.RENDER, retention.PURGE)

# In this order when due at once: old raw rows go before the heatmaps are drawn.
PERIODIC: tuple[Periodic, ...] = (retention.NIGHTLY, maps.NIGHTLY)
