"""The pieces of :class:`pipelines.remote.simulator.ProviderSimulator`: key ledger, state, routes, server."""
