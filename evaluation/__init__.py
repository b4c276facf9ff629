"""Evaluation and the shared safety rules: the scorecard of a run (`summary.json`, typed and
versioned), the collision-course rule on perception's objects, and the risk replay.

Pure: it may import common, simulators, perception, planning and `services.messages` (the wire
contract), never another part of services/, FastStream or aiokafka. Import the submodules
(``evaluation.scorecard``, ``evaluation.safety``, ...) directly.
"""
