"""Firewall backends: each spells the firewall kinds' data (rules, own chains, masquerade) in
the words of one program. The expanders and the planner never know which one is used."""
