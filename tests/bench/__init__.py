"""Benchmarks against the real local Kafka broker and Redis (``make bench``)."""
