"""roleswap's coordination store (Redis): cluster lock, swap journal, published primary.

Every roleswap key name lives in :mod:`roleswap.coord.keys`.
"""
