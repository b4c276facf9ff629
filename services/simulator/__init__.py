"""The simulator's Kafka side: streams scenarios into the topics, obeys vehicle.control."""
