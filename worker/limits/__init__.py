"""What limits a job: the rate budget (`rate/`), the spending cap and the row leases.

Each limit is one module (or one folder, where it has a backend per store), and is given its
backend rather than looking for one: the rate budget its bucket from the store's `Pacing` role,
the spending cap the store's `Ledger`, the leases a Redis client. Nothing here is imported by
this file, so that a store backend can use a limit without an import cycle.
"""
