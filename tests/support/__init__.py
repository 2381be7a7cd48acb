"""Test helpers that run as real processes (the OTLP receiver, …)."""
