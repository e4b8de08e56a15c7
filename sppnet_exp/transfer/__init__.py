"""Transfer of the Table 2 nets to other datasets (paper section 3.2-3.3, Tables 6-7): features of a pretrained
net's layers from a view of each image (the centre crop, the full image at a scale s, the image warped), then
l2-normalised linear SVMs, one-vs-rest, without fine-tuning or augmentation.

* :mod:`.views` — the image views (crop / full / warp at a size s);
* :mod:`.features` — conv4, conv5, pool5 (the 6x6 level), SPP pool5 (every level), fc6, fc7 of a net, one pass;
* :mod:`.svm` — l2 normalisation, the one-vs-rest linear SVMs, Caltech101's mean per-class accuracy.
"""
