"""What AlphaPose's detector families share: COCO's person class and the NMS retry of its
``dynamic_write_results`` (more than 100 boxes left after NMS: NMS again with a threshold 0.05 lower)."""

PERSON_CLASS = 0
MAX_BOXES = 100
RETRY_STEP = 0.05
