"""Background work asked for by name: the port ``app/`` uses, implemented by ``workers/``."""
