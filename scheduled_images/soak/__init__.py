"""`scheduled-images soak`: the whole service running a simulated cloud for days at an
accelerated clock, with faults injected, and a report of what it did.

`fleet` draws the servers and schedules, `servers` runs the PostgreSQL and Redis a soak may
restart, `service` starts the service's processes, `arrange` enables the fleet through the
API and plans it, `recorder` follows the cloud's images as they come, `faults` injects the
faults, `checks` judges the end state, `report` and `plots` write it down, `command` is the
CLI.
"""
