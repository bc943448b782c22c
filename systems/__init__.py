"""The systems under test that ship with splitbrain, each plugged in through the same DB and
Client interfaces (chaos.interfaces) as a user's own system would be: what is specific to a
system (its command line, its status, its log format, its report panels) lives here, beside it,
never in chaos/, workloads/ or checkers/."""
