"""Every shared porcupine/Jepsen history gets its known verdict, from porcupine and from us."""

import csv
import os

import pytest

from checkers import check_linearizable, porcupine
from checkers.formats import load_history
from checkers.prepare import partition

DATA = os.environ.get("SPLITBRAIN_PORCUPINE_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                                "data", "porcupine"))
if not os.path.isdir(DATA):
    DATA = "/work/shared/data/porcupine"
pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(DATA, "expected.csv")),
                                reason="shared porcupine data not present")


def expected_rows():
    if not os.path.exists(os.path.join(DATA, "expected.csv")):
        return []
    with open(os.path.join(DATA, "expected.csv")) as f:
        return [(r["file"], r["expected"] == "true") for r in csv.DictReader(f)]


def model_of(name):
    return "kv" if name.startswith("kv/") else "register"


@pytest.mark.parametrize("name,expected", expected_rows())
def test_our_python_checker_gives_the_known_verdict(name, expected):
    ops, _ = load_history(os.path.join(DATA, name))
    result = check_linearizable(ops, model=model_of(name), checker="python", time_budget_s=60, all_keys=True)
    assert result["valid"] is expected, result


def test_our_python_checker_decides_every_key_of_c50_bad_where_porcupine_cannot():
    ops, _ = load_history(os.path.join(DATA, "kv/c50-bad.txt"))
    result = check_linearizable(ops, model="kv", checker="python", time_budget_s=60, all_keys=True)
    assert len(result["keys"]) == 10
    assert all(r["valid"] in (True, False) for r in result["keys"].values())
    assert result["valid"] is False


@pytest.fixture(scope="module")
def helper(porcupine_helper):
    return porcupine_helper


def test_porcupine_in_one_batch_gives_every_etcd_history_its_known_verdict(helper):
    rows = [(n, e) for n, e in expected_rows() if n.startswith("jepsen/")]
    batch = []
    for name, _ in rows:
        ops, _ = load_history(os.path.join(DATA, name))
        keys, _ = partition(ops, "register")
        batch.append((name, keys, {}))
    answers = porcupine.check_batch(batch, model="register", timeout_s=120)
    for (name, expected), per_key in zip(rows, answers, strict=True):
        verdict = all(a["result"] == "ok" for a in per_key.values())
        assert all(a["result"] in ("ok", "illegal", "skipped") for a in per_key.values()), name
        assert verdict is expected, name


@pytest.mark.parametrize("name,expected", [(n, e) for n, e in expected_rows()
                                           if n.startswith("kv/") and n != "kv/c50-bad.txt"])
def test_porcupine_gives_the_known_kv_verdict(helper, name, expected):
    ops, _ = load_history(os.path.join(DATA, name))
    result = check_linearizable(ops, model="kv", checker="porcupine", time_budget_s=60)
    assert result["valid"] is expected


def test_empty_etcd_history_is_trivially_linearizable():
    ops, _ = load_history(os.path.join(DATA, "jepsen/etcd_095.log"))
    assert ops == []
    assert check_linearizable(ops, checker="python")["valid"] is True
