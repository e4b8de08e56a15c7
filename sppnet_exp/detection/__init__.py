"""Object detection with SPP-net (paper section 4) and the R-CNN baseline.

Rooms: ``boxes`` (box arithmetic, NMS), ``roidb`` (windows per image), ``proposals`` (selective search and
loaders), ``mapping`` (window -> conv5 cells, scale choice), ``window_spp`` (pyramid pooling of all windows),
``feature_cache`` (conv5 / pool5 caches), ``finetune``, ``svm``, ``bbox_reg`` (the learners), ``rcnn`` (the
baseline), ``voc_eval`` (the VOC07 evaluator), ``detections`` (result files), ``pipeline`` (the whole detector).
"""
