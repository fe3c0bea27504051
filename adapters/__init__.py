"""Built-in adapters. Each is an ordinary plugin registered through the ``tanpuhui`` entry-point group."""
