"""Delivery targets shipped with the hub: JSONL files and CloudEvents over HTTP."""

from .http import HttpSink
from .jsonl import JsonlSink

__all__ = ["HttpSink", "JsonlSink"]
