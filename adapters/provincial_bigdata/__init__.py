"""Anhui provincial big-data (data-sharing) platform gateway adapter."""
