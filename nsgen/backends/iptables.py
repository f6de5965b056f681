"""The iptables backend: firewall rules as data, spelled as iptables' words.

Every rule carries `-m comment --comment nsgen:<topology>` right before its target, so
teardown finds exactly the rules this topology added; matches come in one fixed order
(addresses, interfaces, protocol and ports, then match modules), the order iptables-save
prints them in, so the same rule always reads the same.
"""

from __future__ import annotations

from nsgen.kinds.rules import Matches, Rule


def _matches(rule: Rule) -> list[str]:
    """Addresses, interfaces, protocol and ports, each negated if it comes from `rule.not_`,
    in iptables-save's order."""
    words: list[str] = []
    sources: list[tuple[Matches, list[str]]] = [(rule, [])]
    if rule.not_ is not None:
        sources.append((rule.not_, ["!"]))
    for field, option in (
        ("source", "-s"),
        ("destination", "-d"),
        ("in_interface", "-i"),
        ("out_interface", "-o"),
        ("protocol", "-p"),
        ("sport", "--sport"),
        ("dport", "--dport"),
    ):
        for matches, bang in sources:
            value = getattr(matches, field)
            if value is not None:
                words += [*bang, option, str(value)]
    return words


def _modules(rule: Rule) -> list[str]:
    """The -m matches, each with its options (negated ones from `rule.not_`)."""
    words: list[str] = []
    for module, options in (
        ("addrtype", (("src_type", "--src-type"), ("dst_type", "--dst-type"))),
        ("conntrack", (("ctstate", "--ctstate"),)),
        ("mark", (("mark", "--mark"),)),
    ):
        spelled: list[str] = []
        for source, negated in ((rule, False), (rule.not_, True)):
            if source is None:
                continue
            for field, option in options:
                value = getattr(source, field)
                if value is None:
                    continue
                text = ",".join(value) if isinstance(value, list) else str(value)
                spelled += [*(["!"] if negated else []), option, text]
        if spelled:
            words += ["-m", module, *spelled]
    if rule.probability is not None:
        words += ["-m", "statistic", "--mode", "random", "--probability", rule.probability]
    return words


def _target(rule: Rule) -> list[str]:
    words = ["-j", rule.target] if rule.jump is not None else ["-g", rule.target]
    for field, option in (
        ("to_destination", "--to-destination"),
        ("to_source", "--to-source"),
        ("reject_with", "--reject-with"),
        ("set_mark", "--set-mark"),
        ("or_mark", "--or-mark"),
        ("xor_mark", "--xor-mark"),
    ):
        value = getattr(rule, field)
        if value is not None:
            words += [option, str(value)]
    return words


def rule_words(rule: Rule, tag: str) -> list[str]:
    """A rule's matches, the topology's comment and its target, as iptables' words (what
    follows `-A CHAIN`)."""
    words = [*_matches(rule), *_modules(rule)]
    return [*words, "-m", "comment", "--comment", tag, *_target(rule)]


def rule_text(rule: Rule) -> str:
    """A rule as a reader writes it: its matches and target, without the tag."""
    words = rule_words(rule, "")
    at = words.index("comment")
    return " ".join([*words[: at - 1], *words[at + 3 :]])
