"""roleswap: zero-downtime MySQL/MariaDB primary role swap."""

__version__ = "0.1.0"
