"""The ``tanpuhui`` pytest plugin (entry point ``pytest11``): fixtures for adapter authors."""
