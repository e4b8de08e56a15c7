"""The linear stages: SVM constants, fit and detector (:mod:`.svm`), hard-negative mining (:mod:`.hard_negatives`),
every row mined from streamed features in shared passes (:mod:`.mining`), and box regression (:mod:`.bbox_reg`)."""
