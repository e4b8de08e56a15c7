"""One detection cell of Tables 9, 10 or 12 — the only detection modules that read the Hydra config. The task
(:mod:`.task`) runs the detector (:mod:`.detector`: data, features, fine-tuning, SVMs, box regression, test as
explicit stages), the combination (:mod:`.combine`) or the timing cell (:mod:`.timing`); :mod:`.common`,
:mod:`.features`, :mod:`.pretrained` and :mod:`.disk` are the config-reading pieces they share."""
