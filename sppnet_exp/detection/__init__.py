"""Object detection with SPP-net (paper section 4) and the R-CNN baseline.

Rooms, in pipeline order: ``proposals`` / ``proposal_cache`` / ``proposal_formats`` (selective search, its per-image
cache, R-CNN's ``.mat`` files),
``roidb`` (the windows of an image with their overlaps), ``mapping`` (window -> conv5 cells, scale choice),
``window_spp`` (the pyramid over all windows of an image in one call), ``feature_cache`` (conv5 once per image and
scale, pool5 per window), ``heads`` (fc6/fc7 on pooled features), ``finetune`` (fc6, fc7, fc8 on cached features),
``rcnn`` / ``rcnn_finetune`` (the baseline's warped windows and whole-net fine-tuning), ``svm`` (hard-negative
mining), ``bbox_reg``, ``inference`` (NMS, top 100), ``voc_eval`` (the VOC07 evaluator), ``detections`` (result
files), ``combine`` (Table 12), ``timing`` / ``timing_task`` (Tables 9/10's time rows), ``pretrained`` (the
classification net a detector starts from), ``pipeline`` (the detector of one table cell), and ``boxes``.
"""
