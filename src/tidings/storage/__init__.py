"""Storage: the driver interface (base), the drivers, and the URL registry."""
