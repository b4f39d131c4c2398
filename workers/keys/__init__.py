"""API-key pools in Redis: rotation, per-key quotas, cooldowns, failover, health."""

from workers.keys.pool import KeyHealth, KeyPool, KeyPools, key_health, set_key_enabled

__all__ = ["KeyHealth", "KeyPool", "KeyPools", "key_health", "set_key_enabled"]
