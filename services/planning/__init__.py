"""The planning service: perception.objects + vehicle.state → plan → gate → signed vehicle.control."""
