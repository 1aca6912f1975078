"""Where the tests find the repository and the read-only shared references beside it."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
BENCHMARKS = REFERENCE / "benchmarks"
WEBHOOKS = REFERENCE / "github" / "webhooks"
