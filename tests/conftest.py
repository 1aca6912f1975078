"""How the suite is spread over pytest-xdist workers (`make test` runs `-n 2 --dist loadgroup`): tests that share
the session's trained `lora_run` stay on one worker, so ms-swift trains it once; the slow tests start first, so the
last minutes are not one long test on one core while the other idles.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "lora_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("lora_run"))
    if hasattr(config, "workerinput"):  # only under xdist: a plain run keeps file order, fast tests first
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)
