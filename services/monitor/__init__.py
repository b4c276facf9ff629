"""The safety monitor: watches every topic of the registry and publishes `safety.events`.

The checks (liveness, frequency, latency, collision risk, control mode, detection drift,
consumer lag) are plain classes with the clock injected as `now_ns`; `Monitor` routes records
to them and `service.build` wires it to Kafka. See docs/monitor.md.
"""
