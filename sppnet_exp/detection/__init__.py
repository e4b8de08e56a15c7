"""Object detection with SPP-net (paper section 4) and the R-CNN baseline, laid out by stage.

* :mod:`.structures` — boxes (IoU, NMS, box encoding), the roidb of an image, detections and their files;
* :mod:`.proposals` — selective search, its per-image cache, R-CNN's published boxes, filters, one dispatch;
* :mod:`.features` — box scaling and scale choice (the window -> conv5 cells are the nets' own geometry,
  :mod:`sppnet_exp.models.geometry`), batched window SPP, **the one pooling path** (:mod:`.features.pooling`), the conv5
  cache (SPP-net's only per-image feature cache), window features computed
  on the fly (SPP-net, R-CNN), R-CNN's warping, the fc6/fc7 heads, the optional per-window cache;
* :mod:`.finetune` — fg/bg sampling, batch sources (pooled on the fly), the fc fine-tuner, R-CNN's fine-tuning;
* :mod:`.linear` — the SVMs, hard-negative mining, every row mined in one streamed pass, box regression;
* :mod:`.evaluation` — the methods' test protocols, every row tested in one pass, the VOC07 evaluator, Table 12's
  combination, timing;
* :mod:`.cells` — one table cell as a sequence of stages; the only modules that read the Hydra config.
"""
