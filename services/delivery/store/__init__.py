"""All SQL of the delivery service, one module per table family: plain async functions taking a connection."""
