"""The subscription service's SQL, one module per entity: plain async functions taking a connection; rows become
models with ``model_validate``, column lists come from the models' fields."""
