"""Person detection: image in, person boxes and scores out, with each family's official processing.

The detector table (:mod:`.detectors`, data that reads without PyTorch), the person detector and its
families (:mod:`.person_detector`: :mod:`.yolov3`, :mod:`.yolox`), and the networks (:mod:`.darknet`,
:mod:`.yolox_net`, named by the table through :mod:`.builders`).
"""
