"""The perception service: camera.frames → detection, tracking, ranging → perception.objects."""
