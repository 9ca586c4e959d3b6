"""Gatehouse edge service: the gate's decisions, records and local API."""
