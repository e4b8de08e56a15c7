"""Fine-tuning: fg/bg window sampling (:mod:`.sampling`), batch sources (:mod:`.batches`: windows pooled on the fly
from conv5 with the authors' random scale and flips, or precomputed rows), fc6/fc7/fc8 fine-tuning of SPP-net
(:mod:`.fc`) and R-CNN's whole-net fine-tuning on warped windows (:mod:`.rcnn`)."""
