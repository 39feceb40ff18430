"""The Lua sources of the Redis scripts, by controller; scripts.py names
and runs them."""
