"""Pure subscription logic: no I/O, unit-testable without servers."""
