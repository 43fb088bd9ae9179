"""What limits a job: the rate budget (`rate/`), the spending cap and the row leases.

Each limit is one module (or one folder, where it has a backend per store); nothing here is
imported by this file, so that a store backend can use a limit without an import cycle.
"""
