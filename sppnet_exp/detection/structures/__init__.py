"""Detection's data structures: boxes (:mod:`.boxes`: IoU, NMS, flips, box encoding), an image's windows with their
overlaps (:mod:`.roidb`), and detections with their JSON Lines files (:mod:`.detections`)."""
