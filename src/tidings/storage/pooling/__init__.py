"""Pooling: queues spread over many storage backends (Zaqar's pools,
flavors and catalogue). See driver.py and control.py."""
