"""Backends: the embedded LocalBackend, the OpenAI-compatible HTTP backend, and FakeBackend."""
