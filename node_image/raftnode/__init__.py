"""A Raft replicated key-value node."""
