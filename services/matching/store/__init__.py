"""Matching's SQL, one module per entity: handled events, subscriptions, subjects, notification requests, agencies;
retention and the operators' counts."""
