"""Pure perception: torch, torchvision, OpenCV and numpy only; never Kafka.

Modules, by role:

- ``model``: detector builders, ``Detector``, checkpoints and ``load_detector`` (public façade
  over ``architectures``, ``detector``, ``checkpoint``);
- ``classes``: class maps from foreign models onto ours (the classes are ``common.classes``);
- ``tracking``: multi-object tracker (Kalman + ByteTrack-style association);
- ``ranging``: ground-plane / size-prior ranging and TTC with a ``common.calibration.Calibration``;
- ``motion``: ego-frame position and velocity filter per track;
- ``pipeline``: track → range → motion for one camera, per frame;
- ``batching``: which frames a camera stream behind its input serves, and the drop reasons;
- ``image_header``: an encoded image's own size from its JPEG/PNG header (bombs refused
  before decoding);
- ``evaluation`` / ``tracking_metrics``: COCO mAP, MOTA / IDF1;
- ``bench``: detector throughput benchmark.

Nothing here loads a model at import time.
"""
