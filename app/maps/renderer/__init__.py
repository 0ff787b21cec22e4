"""The map renderer: counter thumbnails and large world maps as PNG bytes (pure
functions: no database, no HTTP, nothing of ``app`` outside this package).

Its public face is ``render`` (render functions, ``warm_up``); see it for the pipeline,
``basemap`` for the cached base maps (matplotlib and cartopy, imported only when a base
map is first drawn) and ``clustering`` for how visits become dots. This ``__init__``
imports nothing, so that loading one module does not load the others.
"""
