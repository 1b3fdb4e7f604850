"""``foresight rules check`` catches dead rules and names the file's own line and column.

A literal compared with an enumerated term (a status, a suspension reason, an order state,
a network generation...) must be one of its values, or the rule could never fire; and an
error inside an expression is placed where it is in the file, whatever the YAML style of
the ``expr`` (folded ``>-``, literal ``|``, quoted or plain).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agents.audit import load_catalog
from agents.audit.expr import ExprError, compile_expr
from agents.audit.facts import NETWORKS_DOMAIN, REASON_DOMAIN, STATUS_DOMAIN
from agents.unified_view import STATUSES, apply_event, new_view
from schemas.common import Rat
from schemas.registry import SUBSCRIBER_STATE, decode
from schemas.subscriber_state import SuspendReason
from streams.errors import RuleError
from tests.unit.helpers import event

STATUS_LIST = "opened, active, suspended, closed"


@pytest.mark.parametrize(("expr", "each", "says"), [
    ("status('bss') == 'actve'", None, f"status('bss') is never 'actve'; allowed values "
                                       f"(status): {STATUS_LIST}"),
    ("'actve' == status('bss')", None, "status('bss') is never 'actve'"),      # literal left
    ("status('hss') != 'barred'", None, "status('hss') is never 'barred'"),
    ("status('bss') in ('active', 'suspnded')", None, "is never 'suspnded'"),
    ("status_at('bss', 5) not in ('closd',)", None, "status_at('bss', 5) is never 'closd'"),
    ("reason('hss') == 'arrear'", None, "allowed values (suspension reason): arrears, request"),
    ("'6g' in signing()", None, "signing() never contains '6g'; allowed values (network "
                                "generation): 2g, 3g, 4g, 5g"),
    ("'5G' not in plan_networks()", None, "plan_networks() never contains '5G'"),
    ("item.order == 'canceled'", "product", "item.order is never 'canceled'; allowed values "
                                            "(order state): ordered, cancelled"),
    ("product(item.item).order != 'orderd'", "charge", "product(item.item).order is never"),
    ("item.platform == 'crm'", "product", "allowed values (system): bss, hss, billing"),
    ("profile('value_tier') == 'gold'", None, "allowed values (value tier): low, medium"),
    ("'actve' in (status('hss'), status('bss'))", None, "never contains 'actve'"),
    ("status('bss') == 1", None, "status('bss') is never 1"),
])
def test_a_literal_an_enumerated_term_never_takes_is_an_error(expr: str, each: str | None,
                                                              says: str) -> None:
    with pytest.raises(ExprError) as exc:
        compile_expr(expr, each)
    assert says in str(exc.value)


@pytest.mark.parametrize(("expr", "each"), [
    ("status('bss') == 'active' and status('hss') in ('suspended', 'closed')", None),
    ("status('bss') == null and reason('bss') != 'arrears'", None),
    ("'5g' in plan_networks() and '5g' not in signing()", None),
    ("item.order == 'cancelled' and item.platform == 'vas'", "product"),
    ("plan() == 'anything' and profile('name') == 'x'", None),        # not enumerated
    ("status('bss') == status('hss')", None),                          # no literal
])
def test_literals_that_occur_are_accepted(expr: str, each: str | None) -> None:
    compile_expr(expr, each)


def test_allowed_values_come_from_the_schemas_and_the_view() -> None:
    """One source of truth: adding a reason to the enum allows it in rules."""
    assert REASON_DOMAIN.values == tuple(r.value for r in SuspendReason)
    assert NETWORKS_DOMAIN.values == tuple(r.value for r in Rat)
    assert STATUS_DOMAIN.values == STATUSES
    # every status the view can write is one the checker allows, and nothing else
    seen = set()
    for kind, extra in (("opened", {"plan_id": "p", "plan_networks": ["4g"]}),
                        ("activated", {}), ("suspended", {"reason": "fraud"}),
                        ("resumed", {}), ("closed", {})):
        view = new_view("S00000001", "8613800001234")
        ev = event(SUBSCRIBER_STATE, kind, system="bss", **extra)
        apply_event(view, decode(SUBSCRIBER_STATE, orjson.dumps(ev)))
        seen.add(view["systems"]["bss"]["status"]["v"])
    assert seen == set(STATUSES)


# --- the file's line and column --------------------------------------------------------
HEAD = """\
version: 1
groups:
  - name: g
    rules:
      - id: a-rule
"""
TAIL = """\
        for: 5m
        severity: warning
        notify: [technician]
        labels: {category: status}
        annotations: {summary: "{msisdn}", guidance: fix it}
"""


def _errors(tmp_path: Path, expr_lines: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + expr_lines + TAIL)
    with pytest.raises(RuleError) as exc:
        load_catalog(path)
    return str(exc.value)


@pytest.mark.parametrize(("expr_lines", "where", "token", "says"), [
    # folded block: the error is on the block's 2nd line (file line 8)
    ("        expr: >-\n          status('bss') == 'active'\n"
     "          and status('hss') == 'actve'\n", "8:32", "'actve'", "is never 'actve'"),
    # folded block, syntax error on its 2nd line
    ("        expr: >-\n          status('bss') == 'active'\n"
     "          and balance( < 0\n", "8:24", "<", "syntax error"),
    # literal block with a deeper-indented continuation line
    ("        expr: |\n          '5g' in plan_networks()\n"
     "            and '6g' not in signing()\n", "8:17", "'6g'", "never contains '6g'"),
    # double-quoted: the bad member of a tuple
    ("        expr: \"status('bss') in ('active', 'suspnded')\"\n", "6:44", "'suspnded'",
     "is never 'suspnded'"),
    # double-quoted over two lines
    ("        expr: \"status('bss') == 'active'\n          and reason('bss') == 'arrear'\"\n",
     "7:32", "'arrear'", "is never 'arrear'"),
    # single-quoted with '' escapes before the error
    ("        expr: 'status(''bss'') == ''active'' and stat(''hss'')'\n", "6:50", "stat(",
     "unknown function 'stat'"),
    # plain scalar
    ("        expr: status('bss') == 'active' and balance( < 0\n", "6:54", "<", "syntax error"),
    # plain scalar continued on the next line
    ("        expr: status('bss') == 'active'\n          and nope()\n", "7:15", "nope()",
     "unknown function 'nope'"),
    # an expression ending too early points at its last character
    ("        expr: >-\n          status('bss') ==\n", "7:26", "=", "ends too early"),
    # non-ASCII text before the error (ast counts UTF-8 bytes, files characters)
    ("        expr: profile('name') == '张三' and status('bss') == 'x'\n", "6:60", "'x'",
     "is never 'x'"),
    # the since expression too
    ("        expr: status('bss') == 'active'\n        since: >-\n"
     "          max(1,\n            time_of('bss', 'stats'))\n", "9:13", "time_of(",
     "'stats' is not one of"),
])
def test_expression_errors_name_the_files_line_and_column(tmp_path: Path, expr_lines: str,
                                                          where: str, token: str, says: str
                                                          ) -> None:
    message = _errors(tmp_path, expr_lines)
    assert f"r.yaml:{where}: rule 'a-rule': " in message, message
    assert says in message, message
    line, col = map(int, where.split(":"))
    text = (HEAD + expr_lines + TAIL).splitlines()[line - 1]
    assert text[col - 1:].startswith(token), "the column points at the offending text"


def test_a_yaml_string_never_closed_names_the_line_that_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + "        expr: \"status('bss') == 'active'\n" + TAIL)
    with pytest.raises(RuleError) as exc:
        load_catalog(path)
    message = str(exc.value)
    assert message.startswith(f"{path}:6:15: invalid YAML: "), message
    assert "the quoted string opened on line 6 runs to line 11: is its closing quote " \
           "missing?" in message


def test_a_legit_multiline_string_is_not_blamed_for_a_later_error(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + "        description: \"two\n          lines\"\n"
                    "        expr: status('bss') == 'active'\n       for: 5m\n")
    with pytest.raises(RuleError) as exc:
        load_catalog(path)
    assert str(exc.value).startswith(f"{path}:9:8: invalid YAML: expected <block end>")
    assert "closing quote" not in str(exc.value)


def test_a_quote_never_closed_at_the_end_names_the_line_that_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + TAIL + "        description: \"oops\n")
    with pytest.raises(RuleError, match=r"r\.yaml:11:22: invalid YAML: found unexpected end "
                                        r"of stream \(while scanning a quoted scalar\)"):
        load_catalog(path)


def test_a_yaml_indentation_error_names_where_it_was_found(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + "        expr: status('bss') == 'active'\n       for: 5m\n")
    with pytest.raises(RuleError, match=r"r\.yaml:7:8: invalid YAML: expected <block end>"):
        load_catalog(path)


def test_the_packaged_catalog_passes_the_check() -> None:
    assert len(load_catalog().rules) == 15
