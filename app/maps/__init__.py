"""Visitor maps, the feature: which images a site has, when they are redrawn, the
owner's style, serving them (``service``, ``repository``, ``routes``, ``tasks``,
``schemas``).

The drawing itself is the ``renderer`` package, which loads matplotlib and cartopy;
nothing here imports it at module level, so importing this package stays cheap (the
counter imports ``repository``).
"""
