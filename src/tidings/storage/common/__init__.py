"""Rules every storage driver shares, written once."""
