"""Every process that touches Kafka: settings, broker, messages, the runtime, the services, the CLI.

Importing this package is the first thing each such process does (``roadstream``, ``python -m
services...``, the service child processes), so process-wide settings that must precede other
imports live here.
"""

import os

OPENCV_MAX_IMAGE_PIXELS = 4096 * 4096
"""Largest image OpenCV decodes [pixels]: a backstop behind the perception service's own size
check (``ROADSTREAM_PERCEPTION_MAX_PIXELS``, at most this), in case a decoder is ever reached
with a larger image."""

# OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS once, when cv2 is first imported; set later, it never
# applies. A value already in the environment is the operator's and is kept.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(OPENCV_MAX_IMAGE_PIXELS))
