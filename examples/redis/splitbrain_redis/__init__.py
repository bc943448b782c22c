"""Redis as a splitbrain system under test: see db.py (lifecycle, node options) and client.py
(the register client)."""
