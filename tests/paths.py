"""Where the tests find the repository and the recorded reference data they replay (all inside the repository)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BENCHMARKS = REPO / "configs" / "benchmarks" / "data"
WEBHOOKS = FIXTURES / "github" / "webhooks"
