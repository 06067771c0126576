"""The pose stage: the presets (:mod:`.presets`), their skeletons (:mod:`.skeletons`), the networks
(:mod:`.models`), crops and heatmap decoding (:mod:`.transforms`) and pose NMS (:mod:`.nms`)."""
