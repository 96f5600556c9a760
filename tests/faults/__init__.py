"""Real-fault suite: kill -9 / SIGSTOP of real servers and of roleswap during a swap, then recover."""
