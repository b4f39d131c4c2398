"""The ways other systems come in and hear back: the Redis Stream intake and signed webhooks."""
