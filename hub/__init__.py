"""The tanpuhui runtime: plugin manager, pipeline, store, forwarder and sinks, CLI, config."""
