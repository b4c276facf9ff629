"""Pure perception: torch, torchvision, OpenCV and numpy only; never Kafka.

Modules, by role:

- ``model``: detector builders, ``Detector``, checkpoints and ``load_detector`` (public façade
  over ``architectures``, ``detector``, ``checkpoint``);
- ``classes``: our classes and class maps from foreign models;
- ``tracking``: multi-object tracker (Kalman + ByteTrack-style association);
- ``ranging``: ``Calibration``, ground-plane / size-prior ranging, TTC;
- ``motion``: ego-frame position and velocity filter per track;
- ``pipeline``: track → range → motion for one camera, per frame;
- ``batching``: micro-batching deadlines and the latency budget;
- ``evaluation`` / ``tracking_metrics``: COCO mAP, MOTA / IDF1;
- ``bench``: detector throughput benchmark.

Nothing here loads a model at import time.
"""
