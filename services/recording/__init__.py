"""MCAP recording and replay of roadstream topics, and replay of video files and image folders.

A recording is an MCAP file that Foxglove opens as it is (JSON Schema channels, camera frames
as `foxglove.CompressedImage`) and that holds every Kafka record losslessly: each MCAP message
carries the record's key, headers and coordinates in a `_kafka` field (see envelope.py and
docs/recording.md), so `roadstream replay` republishes the original bytes.
"""

from services.recording.envelope import KafkaRecord, RecordingError

__all__ = ["KafkaRecord", "RecordingError"]
