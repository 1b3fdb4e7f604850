"""``foresight rules check`` / ``foresight rules list`` (streams.rules_command)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streams import rules_command
from streams.errors import RuleError
from tests.unit.test_audit_catalog import GOOD_RULE


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="foresight")
    sub = parser.add_subparsers(dest="command", required=True)
    rules_command.register(sub, lambda p: None)
    args = parser.parse_args(argv)
    return args.func(args)


def test_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD_RULE)
    assert run("rules", "check", str(good)) == 0
    assert capsys.readouterr().out == f"OK: 1 rules in {good}\n"


def test_check_reports_file_and_line_and_exits_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD_RULE)
    bad.write_text(GOOD_RULE.replace("for: 5m", "for: soon"))
    assert run("rules", "check", str(good), str(bad)) == 2
    out = capsys.readouterr()
    assert f"OK: 1 rules in {good}" in out.out
    assert f"{bad}:7: rule 'a-rule' field 'for': 'soon' is not a duration" in out.err
    assert "1 of 2 file(s) have errors" in out.err


def test_list_shows_the_packaged_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("rules", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "FOR", "SEVERITY", "NOTIFY", "EACH", "DESCRIPTION"]
    row = next(line for line in lines if line.startswith("product-not-provisioned "))
    assert row.split()[1:5] == ["10m", "warning>critical@2h", "technician,agent", "product"]


def test_list_of_a_bad_catalog_raises_for_the_cli(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ngroups: []\n")
    with pytest.raises(RuleError, match=r"bad\.yaml:2: field groups"):
        run("rules", "list", "--catalog", str(bad))
