"""``foresight evaluate suppression`` on a small simulated stream, and the policy CLI."""

from __future__ import annotations

import json
from pathlib import Path

from agents.contact.policy import load_policy, parse_policy
from streams.cli import main
from streams.evaluate_suppression import compare, replay, score, simulate

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_policy_meets_the_targets_on_the_simulated_stream() -> None:
    records, truth = simulate(1500, seed=3, days=2)
    fig = replay(records, load_policy(), "live")
    s = score(fig, records, truth)
    pm = s["protected_marketing"]
    assert pm["cases"] >= 30 and pm["stopped"] == pm["cases"], pm["missed"]
    assert s["service_wrongly_suppressed"]["service_requests"] > 0
    assert s["service_wrongly_suppressed"]["suppressed"] == 0
    assert s["seed_disturbance"]["reduction"] > 0.5
    assert all(s["targets_met"].values())
    # a policy without the seed rule misses the target, and the comparison says where
    text = (ROOT / "agents/rules/contact-policy.yaml").read_text()
    weaker = parse_policy(text.replace("expr: profile('seed_user') == true",
                                       "expr: profile('seed_user') == 'never'")
                          .replace("cp-2026-12-01", "weaker"), "weaker.yaml")
    other = replay(records, weaker, "new")
    s2 = score(other, records, truth)
    assert not s2["targets_met"]["protected_marketing_stopped_100pct"]
    diff = compare(fig, other)
    assert diff["changes"].get("suppress->allow", 0) > 0


def test_cli_evaluate_suppression_writes_json_and_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    rc = main(["evaluate", "suppression", "--subscribers", "800", "--days", "1",
               "--seed", "5", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["mode"].startswith("in-process replay")
    assert rc == (0 if report["targets_met"] else 1)


def test_cli_policy_check_and_test_exit_codes(tmp_path: Path, capsys) -> None:
    assert main(["policy", "check", str(ROOT / "agents/rules/contact-policy.yaml")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npolicy_version: x\nrules: []\n")
    assert main(["policy", "check", str(bad)]) == 2
    assert "bad.yaml:3" in capsys.readouterr().err
    assert main(["policy", "test", "--packaged"]) == 0
    failing = tmp_path / "t.yaml"
    failing.write_text(f"policy: {ROOT / 'agents/rules/contact-policy.yaml'}\ntests:\n"
                       "  - name: wrong\n    requests:\n      - {purpose: marketing, "
                       "channel: sms, expect: {decision: suppress, reasons: [seed_user]}}\n")
    assert main(["policy", "test", str(failing)]) == 1
