"""nsgen: Linux network namespaces, veth, bridges and NAT from a YAML topology."""

__version__ = "0.1.0"
