"""Business rules, one function per use case. They never commit: the caller (a view
or a CLI command) owns the unit of work and commits it once."""
