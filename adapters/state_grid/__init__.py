"""State Grid electricity adapter: daily frozen register readings and demand-response results."""
