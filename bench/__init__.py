"""`make bench`: time building and removing N namespaces on one bridge with NAT, by nsgen and by
its peers (the CNI bridge plugin, pyroute2) against a hand-packed rtnetlink floor. Everything
runs inside an nsgen sandbox (see nsgen.sandbox). Entry point: `python -m bench.run`."""
