"""Helpers the integration and end-to-end tests share: producing, consuming, processes, faults."""
