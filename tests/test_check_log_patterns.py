"""Log patterns: a line in a node's logs that its DB calls fatal (a Traceback, a fatal event, a Go
panic) makes the run invalid and is quoted; a node a fault damaged on purpose is not searched."""

from checkers.node_health import add_checks, check_log_patterns

PATTERNS = (r'"event":\s*"fatal"', r"^Traceback \(most recent call last\)", r"^panic:")


def write(run_dir, node, name, text):
    folder = run_dir / "nodes" / node
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_a_fatal_line_is_quoted_with_its_file_and_line(tmp_path):
    write(tmp_path, "n1", "node.log", '{"event": "start"}\n{"event": "role", "role": "leader"}\n')
    write(tmp_path, "n2", "stderr.log", "starting\nTraceback (most recent call last):\n  File x\nValueError: boom\n")
    result = check_log_patterns(str(tmp_path), PATTERNS)
    assert result["valid"] is False
    (match,) = result["matches"]
    assert (match["node"], match["file"], match["line"]) == ("n2", "nodes/n2/stderr.log", 2)
    assert result["reason"] == "n2 logged 'Traceback (most recent call last):' (nodes/n2/stderr.log line 2)"


def test_clean_logs_are_valid_and_no_logs_or_no_patterns_give_no_result(tmp_path):
    assert check_log_patterns(str(tmp_path), PATTERNS) is None
    write(tmp_path, "n1", "node.log", '{"event": "start"}\n')
    assert check_log_patterns(str(tmp_path), ())is None
    assert check_log_patterns(str(tmp_path), PATTERNS)["valid"] is True


def test_a_node_damaged_on_purpose_is_skipped(tmp_path):
    write(tmp_path, "n3", "node.log", '{"event": "fatal", "error": "corrupt log"}\n')
    assert check_log_patterns(str(tmp_path), PATTERNS, skip_nodes=["n3"]) is None
    assert check_log_patterns(str(tmp_path), PATTERNS)["valid"] is False


def test_a_log_finding_overrides_a_valid_history_and_comes_before_a_history_finding(tmp_path):
    write(tmp_path, "n1", "node.log", '{"event": "fatal", "error": "storage: OSError"}\n')
    finding = check_log_patterns(str(tmp_path), PATTERNS)
    valid = add_checks({"valid": True, "reason": "Valid.", "checkers": {}}, [finding])
    assert valid["valid"] is False and valid["reason"].startswith("log-patterns: n1 logged")
    invalid = add_checks({"valid": False, "reason": "Key r1 is not linearizable.", "checkers": {}}, [finding])
    assert invalid["reason"].startswith("log-patterns: n1 logged") and "Also: Key r1" in invalid["reason"]
