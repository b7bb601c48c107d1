"""Use cases over the ports: definitions, workflows, state resources and the background updater.

Services take typed arguments (the handlers translate the wire format) and depend only on the port
interfaces (`store.interface`, `executor.interface`), never on an implementation (import-linter
checks it); the updater also takes `executor.rate_limit`'s token bucket, which talks to nothing.
"""
