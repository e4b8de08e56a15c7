"""Region proposals: selective search (:mod:`.selective_search`), its per-image cache (:mod:`.cache`), R-CNN's
published boxes and per-image arrays (:mod:`.formats`), read-time filters (:mod:`.filters`), and the dispatch
over those sources (:func:`~.sources.get_proposals`)."""
