"""Our search bounds its cache: when full it is cleared, which costs time but never correctness."""

import random

from checkers.generate import inject_stale_read, register_history
from checkers.prepare import partition
from checkers.search import check_key


def test_a_tiny_cache_gives_the_same_verdicts_and_reports_its_resets():
    resets = 0
    for seed in range(30):
        ops = register_history(seed, n_ops=14, processes=4, unique_values=False, value_domain=3, p_info=0.2)
        for h in filter(None, [ops, inject_stale_read(ops, random.Random(seed))]):
            for kh in partition(h, "register")[0]:
                bounded = check_key(kh, cache_limit=16)
                assert bounded["valid"] == check_key(kh)["valid"]
                resets += bounded["cache_resets"] if "cache_resets" in bounded else 0
    assert resets > 0
