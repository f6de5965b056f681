"""Every kind of network object nsgen builds, each with one home: a module here and a template
under templates/kinds/. nsgen/kinds/base.py says what a kind provides; nsgen/kinds/registry.py
lists them (KINDS); docs/architecture.md walks through adding one."""
