"""Retraining from detection drift: requests, recorded data, fine-tuning, a registered candidate.

`request` turns a `detection_drift` episode recorded in a run's MCAP file into a retraining
request; `recorded` builds COCO data from the request's frames and their ground truth;
`pipeline` fine-tunes the production weights on it, evaluates and registers a candidate.
docs/retraining.md describes the whole path.
"""
