"""Scenario simulator (pure: numpy, OpenCV, pydantic; no Kafka).

- `simulators.library`: `list_scenarios`, `load_scenario`, `DEFAULT_SCENARIO`, `ScenarioError`
- `simulators.world`: `World.from_scenario(...)`, `step`, `ego_state`, `ground_truth`, `render`
- `simulators.kinematics`: the bicycle model and actuator limits, driven by
  `common.control.ControlCommand`
- `simulators.render`: `CameraRenderer`, `RenderOptions`, `encode_jpeg`
- `simulators.metrics`: closed-loop run metrics (`world.metrics.summary()`)
- `simulators.bench`: `bench_render`; `simulators.contact_sheet`: `contact_sheet`
"""
