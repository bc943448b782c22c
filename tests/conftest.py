import os
import sys

# Make the node package importable from a plain checkout (it lives under node_image/ so that the
# image build context holds it); `pip install -e .` maps it the same way.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "node_image")):
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_addoption(parser):
    parser.addoption("--sim-seeds", type=int, default=int(os.environ.get("SPLITBRAIN_SIM_SEEDS", "1000")),
                     help="how many simulator seeds the randomized Raft simulation test runs (default 1000)")
    parser.addoption("--sim-first-seed", type=int, default=0, help="first simulator seed")
