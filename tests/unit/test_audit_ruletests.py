"""``foresight rules test``: the packaged catalog's rule tests pass, cover every rule with a
positive and a benign case, and the runner reports failures and malformed files the way
an operator can act on (file, test, eval_time, expected vs got; file:line)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.audit import load_catalog, ruletests
from agents.audit.catalog import default_catalog_path
from agents.audit.ruletests import load_test_file, packaged_tests, run_test_file
from agents.audit.testing import AuditHarness
from streams import rules_command


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="foresight")
    sub = parser.add_subparsers(dest="command", required=True)
    rules_command.register(sub, lambda p: None)
    args = parser.parse_args(argv)
    return args.func(args)


# --- the packaged tests ------------------------------------------------------------------
def test_the_packaged_rule_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """What 'make test' and CI run: every shipped rule test, through the CLI."""
    files = packaged_tests()
    assert {f.name for f in files} == {"cross-system-audit.yaml", "service-reminders.yaml"}
    code = run("rules", "test", "--packaged")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.err == ""
    for f in files:
        assert re.search(rf"^OK: \d+ tests \(\d+ evaluations\) in {re.escape(str(f))}$",
                         out.out, re.M), out.out


def _packaged_specs() -> list[dict[str, Any]]:
    tests = []
    for f in packaged_tests():
        tests += yaml.safe_load(f.read_text(encoding="utf-8"))["tests"]
    return tests


def _expected(test: dict[str, Any], what: str) -> list[dict[str, Any]]:
    return [x for e in test["expect"] for x in (e.get(what) or ())]


def test_every_rule_has_a_positive_and_a_benign_test() -> None:
    catalog = load_catalog()
    tests = _packaged_specs()
    for rule in catalog.rules:
        fired = [t for t in tests if any(x["rule"] == rule.id for what in ("alerts", "hints")
                                         for x in _expected(t, what))]
        assert fired, f"no test expects {rule.id} to fire"
        if rule.technician:
            severities = {a["severity"] for t in fired for a in _expected(t, "alerts")
                          if a["rule"] == rule.id}
            assert severities == {rule.severity, *(s for _, s in rule.escalate)}, rule.id
        if rule.agent:
            assert any(h["rule"] == rule.id for t in fired for h in _expected(t, "hints")), \
                f"no test expects the agent hint of {rule.id}"
        else:
            assert all(all(e.get("hints") in (None, []) or all(
                h["rule"] != rule.id for h in e["hints"]) for e in t["expect"])
                for t in fired), f"{rule.id} notifies no agent"
        benign = [t for t in tests if t["name"].startswith(f"{rule.id}: benign")]
        assert benign, f"no benign look-alike test for {rule.id}"
        assert any(rule.id in t.get("never", ()) for t in benign), \
            f"no benign test of {rule.id} asserts it never sends anything"
        for t in benign:
            assert all(x["rule"] != rule.id for what in ("alerts", "hints")
                       for x in _expected(t, what)), t["name"]
            # it asserts silence where the rule would have fired: after its grace period
            assert any(e.get("alerts") == [] for e in t["expect"]), t["name"]
            if rule.agent:
                assert any(e.get("hints") == [] for e in t["expect"]), t["name"]


def test_agent_only_reminders_never_raise_a_technician_alert() -> None:
    reminders = {r.id for r in load_catalog().rules if not r.technician}
    for t in _packaged_specs():
        if t["name"].split(":")[0] in reminders:
            assert all(e.get("alerts") == [] for e in t["expect"]), t["name"]


# --- the runner ------------------------------------------------------------------------------
CATALOG = str(default_catalog_path())
BARRED = """\
rule_files: [{catalog}]
tests:
  - name: barred
    reports:
      - {{at: 0s, system: bss, kind: activated}}
      - {{at: 0s, system: hss, kind: activated}}
      - {{at: 1m, system: hss, kind: suspended, reason: fraud}}
    expect:
{expect}
"""


def _file(tmp_path: Path, expect: str, name: str = "t.yaml", text: str | None = None) -> Path:
    path = tmp_path / name
    path.write_text(text if text is not None else BARRED.format(catalog=CATALOG, expect=expect))
    return path


def test_a_passing_file_prints_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, """\
      - eval_time: 5m
        alerts: []
      - eval_time: 7m
        alerts: [{rule: bss-active-hss-barred, severity: warning, starts_at: 1m}]
        hints: [{rule: bss-active-hss-barred}]
""")
    assert run("rules", "test", str(path)) == 0
    assert capsys.readouterr().out == f"OK: 1 tests (2 evaluations) in {path}\n"


def test_a_failure_names_file_test_eval_time_expected_and_got(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, """\
      - eval_time: 7m
        alerts:
          - {rule: bss-active-hss-barred, severity: critical, annotations: {summary: lost}}
""")
    assert run("rules", "test", str(path)) == 1
    err = capsys.readouterr().err.splitlines()
    # the summary's wording belongs to the catalog: only its presence is checked here
    assert err[0].startswith(
        f'{path}: test 1 (barred) at eval_time 7m: alerts: expected [bss-active-hss-barred'
        '{severity="critical", item="", annotations.summary~="lost"}], got '
        '[bss-active-hss-barred{severity="warning", item="", starts_at="1m", '
        'annotations.summary="'), err[0]
    assert err[0].endswith('"}]') and len(err) == 2
    assert err[1] == f"FAILED: 1 of 1 tests in {path}"


@pytest.mark.parametrize(("expect", "why"), [
    # the negative form: nothing may be firing
    ("      - eval_time: 7m\n        alerts: []\n", "got [bss-active-hss-barred{"),
    # an alert that does not fire yet (grace period)
    ("      - eval_time: 5m\n        alerts: [{rule: bss-active-hss-barred, severity: warning}]\n",
     "got []"),
    ("      - eval_time: 7m\n        alerts: [{rule: bss-active-hss-barred, severity: warning,"
     " starts_at: 2m}]\n", 'starts_at="1m"'),
    ("      - eval_time: 7m\n        alerts: [{rule: bss-active-hss-barred, severity: warning,"
     " item: x}]\n", 'item=""'),
    ("      - eval_time: 7m\n        alerts: [{rule: bss-active-hss-barred, severity: warning,"
     " labels: {category: billing}}]\n", 'labels.category="status"'),
    ("      - eval_time: 7m\n        alerts: [{rule: bss-active-hss-barred, severity: warning,"
     " subscriber: S00000002}]\n", 'subscriber="S00000002"'),
    # one alert is expected twice: a record matches one expectation only
    ("      - eval_time: 7m\n        alerts: [{rule: bss-active-hss-barred, severity: warning},"
     " {rule: bss-active-hss-barred, severity: warning}]\n", "got [bss-active-hss-barred{"),
    ("      - eval_time: 7m\n        hints: []\n", "hints: expected [], got [bss-active"),
    ("      - eval_time: 7m\n        hints: [{rule: bss-active-hss-barred, script: nope}]\n",
     'hints: expected [bss-active-hss-barred{script~="nope"}]'),
    ("      - eval_time: 7m\n        hints: [{rule: port-out-still-active}]\n",
     'hints: expected [port-out-still-active{}], got [bss-active-hss-barred{title='),
])
def test_mismatches_fail(tmp_path: Path, expect: str, why: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run("rules", "test", str(_file(tmp_path, expect))) == 1
    assert why in capsys.readouterr().err


def test_never_catches_an_alert_no_eval_time_sees(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A charge refunded later fires and resolves between two eval_times: only 'never'
    notices."""
    text = f"""\
rule_files: [{CATALOG}]
tests:
  - name: flap
    never: [charged-without-product]
    reports:
      - {{at: 0s, system: bss, kind: activated}}
      - {{at: 1m, system: billing, kind: charged, charge_id: CH-1, item: vas-a,
         amount_cents: 500}}
      - {{at: 2m, system: billing, kind: refunded, charge_id: CH-1, amount_cents: 500}}
    expect:
      - {{eval_time: 50s, alerts: [], hints: []}}
      - {{eval_time: 3m, alerts: [], hints: []}}
"""
    path = _file(tmp_path, "", text=text)
    assert run("rules", "test", str(path)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith(f"{path}: test 1 (flap) at eval_time 3m: never: expected nothing "
                             "sent by charged-without-product, got [charged-without-product{")
    assert 'item="CH-1"' in err[0] and "} firing" in err[0] and "} resolved" in err[0]
    assert "charged-without-product hint active=true" in err[0]
    # without 'never' the same test passes: nothing is active at either eval_time
    assert run("rules", "test", str(_file(tmp_path, "", text=text.replace(
        "    never: [charged-without-product]\n", "")))) == 0


def test_resolved_alerts_leave_and_escalations_replace(tmp_path: Path) -> None:
    path = _file(tmp_path, "", text=f"""\
rule_files: [{CATALOG}]
tests:
  - name: lifecycle
    reports:
      - {{at: 0s, system: bss, kind: activated}}
      - {{at: 0s, system: hss, kind: activated}}
      - {{at: 0s, system: hss, kind: network_registered, rat: 4g}}
      - {{at: 1m, system: hss, kind: suspended, reason: fraud}}
      - {{at: 2h, system: hss, kind: resumed}}
    expect:
      - eval_time: 1h2m
        alerts: [{{rule: bss-active-hss-barred, severity: critical}}]
      - eval_time: 2h1m
        alerts: []
""")
    result = run_test_file(path)
    assert (result.tests, result.evaluations, result.failures) == (1, 2, [])


def test_one_to_one_matching_does_not_let_a_loose_expectation_steal(tmp_path: Path) -> None:
    """Two hints of one rule; the first expectation fits both, the second only one."""
    path = _file(tmp_path, "", text=f"""\
rule_files: [{CATALOG}]
tests:
  - name: two charges
    reports:
      - {{at: 0s, system: bss, kind: activated}}
      - {{at: 1m, system: billing, kind: charged, charge_id: CH-2, item: vas-a,
         amount_cents: 1000}}
      - {{at: 2m, system: billing, kind: charged, charge_id: CH-1, item: vas-b,
         amount_cents: 500}}
    expect:
      - eval_time: 3m
        alerts:
          - {{rule: charged-without-product, severity: critical, item: CH-1}}
          - {{rule: charged-without-product, severity: critical, item: CH-2}}
        hints:
          - {{rule: charged-without-product, script: ".00"}}
          - {{rule: charged-without-product, script: "10.00"}}
""")
    assert run_test_file(path).failures == []


def test_rule_files_are_relative_to_the_test_file_and_times_may_be_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "rules.yaml").write_text(Path(CATALOG).read_text(encoding="utf-8").replace(
        "for: 5m\n        severity: warning\n        escalate", "for: 20m\n        severity: "
        "warning\n        escalate", 1))
    path = _file(sub, "", text="""\
rule_files: [rules.yaml]
start: 2026-11-26T08:00:00+08:00
tests:
  - name: a longer grace in the local copy
    reports:
      - {at: 0s, system: bss, kind: activated}
      - {at: 0s, system: hss, kind: activated}
      - {at: "2026-11-26T00:01:00Z", system: hss, kind: suspended, reason: fraud}
    expect:
      - eval_time: 7m
        alerts: []
      - eval_time: 2026-11-26T00:22:00Z
        alerts: [{rule: bss-active-hss-barred, severity: warning, starts_at: 1m}]
""")
    monkeypatch.chdir(tmp_path)
    assert load_test_file(path).catalog.get("bss-active-hss-barred").for_ms == 20 * 60_000
    assert run_test_file(path).failures == []


def test_a_late_report_is_applied_when_it_arrives(tmp_path: Path) -> None:
    path = _file(tmp_path, "", text=f"""\
rule_files: [{CATALOG}]
tests:
  - name: late
    reports:
      - {{at: 0s, system: bss, kind: activated}}
      - {{at: 0s, system: hss, kind: activated}}
      - {{at: 1m, arrives: 30m, system: hss, kind: suspended, reason: fraud}}
    expect:
      - eval_time: 29m
        alerts: []
      - eval_time: 30m
        alerts: [{{rule: bss-active-hss-barred, severity: warning, starts_at: 1m}}]
""")
    assert run_test_file(path).failures == []


def test_run_selects_tests_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BARRED.format(catalog=CATALOG, expect="      - eval_time: 7m\n        alerts: []\n")
    text += text.split("tests:\n")[1].replace("name: barred", "name: other")
    path = _file(tmp_path, "", text=text)
    assert run("rules", "test", str(path), "--run", "^oth") == 1
    out = capsys.readouterr()
    assert "test 2 (other)" in out.err and "test 1 (barred)" not in out.err


def test_lateness_is_passed_to_a_harness_that_takes_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    class Harness(AuditHarness):
        def __init__(self, catalog: Any = None, lateness_ms: int = 2000) -> None:
            seen.append(lateness_ms)
            super().__init__(catalog)

    monkeypatch.setattr(ruletests, "AuditHarness", Harness)
    path = _file(tmp_path, "", text=BARRED.format(
        catalog=CATALOG, expect="      - eval_time: 7m\n        alerts: []\n").replace(
        "tests:", "lateness: 5s\ntests:", 1))
    run_test_file(path)
    assert seen == [5000]


# --- malformed files -------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "line", "says"), [
    (("tests:", "testz: []\ntests:"), 2, "testz: unknown field"),
    (("  - name: barred", "  - name: barred\n    nme: x"), 4, "tests[0].nme: unknown field"),
    (("reason: fraud", "reasn: fraud"), 7, "suspended reports have no field 'reasn'"),
    (("reason: fraud", "reason: fraudd"), 7, "suspended report: reason: Input should be"),
    (("kind: activated}}\n      - {{at: 1m", "kind: activatd}}\n      - {{at: 1m"), 6,
     "unknown report kind 'activatd'"),
    (("at: 1m", "at: 1 minute"), 7, "'1 minute' is not a duration"),
    (("at: 1m", "at: 2026-11-26T00:01:00"), 7, "has no time zone"),
    (("    expect:", "    use: [nope]\n    expect:"), 8, "unknown fixture 'nope'"),
    (("{expect}", "      - eval_time: 7m\n        alerts: [{{rule: no-such-rule, severity: info}}]"),
     10, "unknown rule 'no-such-rule'"),
    (("{expect}", "      - eval_time: 7m\n        alerts: [{{rule: r, severity: info, x: 1}}]"),
     10, "tests[0].expect[0].alerts[0].x: unknown field"),
    (("{expect}", "      - eval_time: 7m\n        alerts: [{{rule: r}}]"), 10,
     "alerts[0].severity: is required"),
    (("{expect}", "      - eval_time: 7m"), 9, "expects nothing: give alerts"),
    (("    expect:", "    never: [no-such-rule]\n    expect:"), 8, "unknown rule 'no-such-rule'"),
    (("{expect}", "      - eval_time: 7m\n        alerts: [{{rule: r, severity: info, "
                  "status: resolved}}]"), 10, "status: Input should be 'firing'"),
    (("rule_files: [{catalog}]", "rule_files: [missing.yaml]"), 1, "does not load"),
    (("    expect:", "    expect: [\n"), 10, "invalid YAML"),
])
def test_malformed_files_exit_2_naming_the_line(tmp_path: Path, change: tuple[str, str],
                                                line: int, says: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    old, new = change
    template = BARRED.replace("{expect}", "      - eval_time: 7m\n        alerts: []") \
        if old != "{expect}" else BARRED
    assert old in template
    text = template.replace(old, new, 1).format(catalog=CATALOG, expect="")
    path = _file(tmp_path, "", text=text)
    assert run("rules", "test", str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}:" in err, err
    assert says in err, err
    assert "malformed" in err


def test_missing_file_and_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("rules", "test", str(tmp_path / "nope.yaml")) == 2
    assert "cannot read the test file" in capsys.readouterr().err
    assert run("rules", "test") == 2
    assert "give test FILEs or --packaged" in capsys.readouterr().err


def test_help_explains_the_format_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run("rules", "test", "--help")
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for words in ("promtool test rules", "eval_time", "alerts: []", "rule_files",
                  "lateness", "5m30s", "Exit code 0", "1 when one fails", "2 when a file"):
        assert words in text, words


def test_the_example_in_the_docs_passes(tmp_path: Path) -> None:
    """docs/audit.md shows a test file; it must stay one that passes."""
    doc = (Path(__file__).parents[2] / "docs" / "audit.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Testing rules"):]
    example = section[section.index("```yaml\n") + 8:section.index("```\n", 8)]
    assert "rule_files: [../audit.yaml]" in example
    path = _file(tmp_path, "", text=example.replace("[../audit.yaml]", f"[{CATALOG}]"))
    result = run_test_file(path)
    assert (result.tests, result.failures) == (2, [])
