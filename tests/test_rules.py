"""Firewall rules are data: iptables words in `rule:` are read into fields with iptables' own
option table (full spellings only), and the iptables backend spells the fields back."""

from __future__ import annotations

from typing import Any

import pytest

from nsgen.backends.iptables import rule_text, rule_words
from nsgen.errors import TopologyError
from nsgen.kinds.rules import Rule
from nsgen.load import topology_from_data


def rule(text: str, **keys: Any) -> Rule:
    return Rule.model_validate({"chain": "FORWARD", "rule": text, **keys})


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("-s 10.0.0.0/8 -j ACCEPT", "filter"),
        ("-i br0 ! -o br0 -j DROP", "filter"),
        ("! -i br0 -o br0 -j DROP", "filter"),
        ("-s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE", "nat"),
        ("-m mark ! --mark 0x4000/0x4000 -j RETURN", "nat"),
        ("-d 10.96.0.1/32 -p tcp --dport 80 -j KUBE-SVC-WEB", "nat"),
        ("-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-WEB-1", "nat"),
        ("-p tcp -j DNAT --to-destination 10.244.0.2:8080", "nat"),
        ("-m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT", "filter"),
        (
            "-p udp --sport 1000:2000 -m addrtype --dst-type LOCAL -j REJECT --reject-with icmp-port-unreachable",
            "filter",
        ),
        ("-j MARK --or-mark 0x4000", "nat"),
    ],
)
def test_rule_words_read_into_fields_spell_back_the_same(text: str, table: str) -> None:
    assert rule_text(rule(text, table=table)) == text


def test_options_come_out_in_iptables_save_order_whatever_order_they_were_written_in() -> None:
    written = rule("-p tcp --dport 22 -o eth0 -s 10.0.0.0/8 -j ACCEPT")
    assert rule_text(written) == "-s 10.0.0.0/8 -o eth0 -p tcp --dport 22 -j ACCEPT"


def test_the_text_and_the_fields_are_the_same_rule() -> None:
    text = rule("-i br0 ! -o br0 -j DROP")
    fields = Rule.model_validate(
        {"chain": "FORWARD", "in_interface": "br0", "not": {"out_interface": "br0"}, "jump": "DROP"}
    )
    assert text == fields


def test_every_rule_carries_the_topology_tag_just_before_its_target() -> None:
    words = rule_words(rule("-s 10.0.0.0/8 -j ACCEPT"), "nsgen:seed")
    assert words == ["-s", "10.0.0.0/8", "-m", "comment", "--comment", "nsgen:seed", "-j", "ACCEPT"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "-s 10.0.0.0/8 --pol DROP -j ACCEPT",
            "--pol is an abbreviation (iptables would read --policy): nsgen reads options spelled in full only",
        ),
        (
            "-p tcp --dpo 22 -j ACCEPT",
            "--dpo is an abbreviation (iptables would read --dport): nsgen reads options spelled in full only",
        ),
        (
            "-P FORWARD DROP",
            "-P: give only matches and a target; the table, chain and operation come from the keys table, chain and insert",
        ),
        (
            "--flush",
            "--flush: give only matches and a target; the table, chain and operation come from the keys table, chain and insert",
        ),
        (
            "-m comment --comment nsgen:other -j ACCEPT",
            "a rule may not carry a comment of its own: nsgen tags every rule with the topology's comment, and teardown finds its rules by it",
        ),
        ("--dport 22 -j ACCEPT", "--dport needs -m tcp before it"),
        (
            "-m multiport --dports 1,2 -j ACCEPT",
            "-m multiport is not a match nsgen understands (it understands addrtype, conntrack, mark, sctp, state, statistic, tcp, udp)",
        ),
        ("-s 10.0.0.0/8 -j ACCEPT -j DROP", "a rule has one target: -j or -g is given twice"),
        ("-s 10.0.0.0/8 -s 10.1.0.0/16 -j ACCEPT", "-s is given twice"),
        ("-s 10.0.0.0/8 !", "the rule ends with '!': negate an option that follows it"),
        ("-s -j ACCEPT", "-s needs a value"),
    ],
)
def test_what_is_not_a_match_or_a_target_is_refused_naming_the_word(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        rule(text)
    assert f"rule {text!r}: {reason}" in str(caught.value)


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        (
            {"rule": "-p tcp --dport 80"},
            "a rule needs exactly one target: 'jump' (-j) or 'goto' (-g)",
        ),
        (
            {"rule": "-j DNAT --to-destination 10.0.0.2"},
            "DNAT works only in the nat table (table: nat)",
        ),
        (
            {"rule": "-s 10.0.0.1/8 -j ACCEPT"},
            "'10.0.0.1/8' has host bits set: the subnet is 10.0.0.0/8",
        ),
        (
            {"rule": "-s 10.0.0.0/8 -j ACCEPT", "source": "10.1.0.0/16"},
            "both say what the rule does: give one or the other",
        ),
        ({"jump": "ACCEPT", "dport": 22}, "sport and dport need protocol tcp, udp or sctp"),
        (
            {"jump": "ACCEPT", "reject_with": "tcp-reset"},
            "reject_with belongs to the target REJECT, not ACCEPT",
        ),
    ],
)
def test_incoherent_rules_are_refused(keys: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        Rule.model_validate({"chain": "FORWARD", **keys})
    assert reason in str(caught.value)


def test_a_refused_rule_is_one_line_at_its_path_in_the_file() -> None:
    data = {
        "name": "fw",
        "host": {"iptables": {"rules": [{"chain": "FORWARD", "rule": "--pol DROP -j ACCEPT"}]}},
    }
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, "fw.yaml")
    (line,) = caught.value.lines()
    assert line.startswith("fw.yaml")
    assert "host.iptables.rules[0]" in line
    assert "--pol is an abbreviation (iptables would read --policy)" in line


def test_a_jump_to_a_chain_that_is_not_declared_is_refused() -> None:
    data = {
        "name": "fw",
        "host": {"iptables": {"rules": [{"chain": "FORWARD", "rule": "-j NOWHERE"}]}},
    }
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, "fw.yaml")
    assert caught.value.lines() == [
        "fw.yaml: host.iptables.rules[0].jump: NOWHERE is not a chain declared in table filter "
        "(under iptables.chains), nor a target nsgen knows"
    ]
