"""faultcast daemon: scores live sensor readings from Kafka and publishes fault and congestion alerts."""

__version__ = "0.1.0"
