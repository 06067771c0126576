"""The official weights: where they are published and recorded (:mod:`.files`), how they are loaded
strictly into our networks (:mod:`.load`), downloaded and verified (:mod:`.download`,
``python -m alphapose.weights``)."""
