"""Testing and evaluation: the per-image detector (:mod:`.inference`), the methods' protocols (:mod:`.protocols`),
every row tested in one pass (:mod:`.testing`), the VOC07 evaluator (:mod:`.voc_eval`), Table 12's combination
(:mod:`.combine`) and the timing of Tables 9/10 (:mod:`.timing`)."""
