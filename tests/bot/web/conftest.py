"""The service with its web view against a fake GitHub that also plays github.com's OAuth pages, stores filled
through the real comment → dispatch → agent-callback flow, and a real headless Chromium (Debian's) for the pages."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bot.service.conftest import REPO, WORKFLOW, Bot, job_of, make_bot
from tests.fakes.github import FakeGitHub

CLIENT_ID = "Iv1.webviewtests01"
CLIENT_SECRET = "web-view-client-secret"
POLICY = "version: 1\nbenchmarks:\n  default: [cmmlu]\n"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OUTPUT = Path(__file__).resolve().parents[3] / "test-output" / "web"


def outcomes(seed: int, p_right: float, n: int = 60) -> dict[str, Any]:
    """An eval_result event's data: per-question outcomes over two CMMLU subjects."""
    rnd = random.Random(seed)
    questions = {f"{s}/{i}": rnd.random() < p_right for s in ("agronomy", "anatomy") for i in range(n // 2)}
    subsets = {s: {"n": n // 2, "correct": sum(v for k, v in questions.items() if k.startswith(s))}
               for s in ("agronomy", "anatomy")}
    correct = sum(questions.values())
    return {"benchmark": "cmmlu", "score": correct / n, "n": n, "correct": correct, "subsets": subsets,
            "questions": questions}


async def run_to_end(bot: Bot, run_id: str, result: dict[str, Any], *, losses: tuple[float, ...] = ()) -> None:
    """Play the agent's side of a run through the callback API: accepted, training progress, the eval, finished."""
    run = await bot.service.store.get_run(run_id)
    assert run is not None
    seq = 0
    await bot.post_event(run_id, run.run_token, seq, "accepted", kind=run.kind, model="tiny")
    for step, loss in enumerate(losses, start=1):
        seq += 1
        await bot.post_event(run_id, run.run_token, seq, "progress", step=step * 5, total=5 * len(losses),
                             loss=loss)
    await bot.post_event(run_id, run.run_token, seq + 1, "eval_result", **result)
    await bot.post_event(run_id, run.run_token, seq + 2, "finished", status="succeeded")
    await bot.settle()


@dataclass
class WebBot:
    bot: Bot
    github: FakeGitHub

    @property
    def url(self) -> str:
        return self.bot.url

    async def eval_at_main_commits(self, n: int = 3, *, first_pr: int = 10) -> list[tuple[str, str]]:
        """`n` commits on main, each evaluated (`/eval cmmlu model=tiny force=true` on a PR whose head is that
        commit, as after a fast-forward merge); returns [(sha, run id)] oldest first."""
        out = []
        for i in range(n):
            sha = f"{i + 1:x}" * 40
            self.bot.repo.add_commit(sha, {}, branch="main", message=f"Merge #{first_pr + i}: step {i + 1}")
            self.bot.repo.add_pull(first_pr + i, head_sha=sha, author="Codertocat")
            before = len(self.bot.dispatches())
            await self.bot.comment("/eval cmmlu model=tiny force=true", number=first_pr + i)
            await self.bot.settle()
            assert len(self.bot.dispatches()) == before + 1, self.bot.bot_comments(first_pr + i)
            job = job_of(self.bot.dispatches()[-1])
            await run_to_end(self.bot, job.run_id, outcomes(100 + i, 0.3 + 0.1 * i))
            out.append((sha, job.run_id))
        return out

    async def trained_and_compared(self) -> str:
        """`/train` on PR #1 with a loss curve, compared with the base model (backfilled when none is stored)."""
        await self.bot.comment("/train tiny max_steps=20")
        await self.bot.settle()
        train = job_of(self.bot.dispatches()[-1])
        await run_to_end(self.bot, train.run_id, outcomes(1, 0.85), losses=(2.5, 2.1, 1.7, 1.4))
        base = job_of(self.bot.dispatches()[-1])
        if base.run_id != train.run_id:
            assert base.kind == "eval"
            await run_to_end(self.bot, base.run_id, outcomes(2, 0.35))
        assert any("tunebot:compare:" in c for c in self.bot.bot_comments(1)), self.bot.bot_comments(1)
        return train.run_id


__all__ = ["REPO", "Browser", "WebBot", "browser", "make_bot", "outcomes", "run_to_end", "web_bot"]


@pytest.fixture
async def web_bot(make_bot: Any) -> AsyncIterator[Callable[..., Awaitable[WebBot]]]:
    made: list[FakeGitHub] = []

    async def make(*, private: bool = False, **config: Any) -> WebBot:
        gh = FakeGitHub(app_slug="acme-tunebot", token_login="acme-ci-bot")
        await gh.start()
        made.append(gh)
        repo = gh.add_bot_repo(REPO, workflow=WORKFLOW)
        repo.private = private
        repo.add_file(".tunebot.yml", POLICY)
        bot = await make_bot(github=gh, github_web_url=gh.web_url, github_client_id=CLIENT_ID,
                             github_client_secret=CLIENT_SECRET, **config)
        gh.add_oauth_app(CLIENT_ID, CLIENT_SECRET, f"{bot.url}/ui/oauth/callback")
        return WebBot(bot, gh)

    yield make


class Browser:
    """Debian's headless Chromium through Selenium and /usr/bin/chromedriver. Selenium blocks, and the servers
    under test share this event loop: every browser call runs in a thread."""

    def __init__(self, driver: Any, out: Path) -> None:
        self.driver = driver
        self.out = out

    async def get(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def js(self, script: str, *args: Any) -> Any:
        return await asyncio.to_thread(self.driver.execute_script, script, *args)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    async def wait_until_left(self, fragment: str, timeout: float = 30.0) -> None:
        """Wait until the browser has navigated away from a page whose URL holds `fragment` (a click only starts the
        navigation)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while fragment in await asyncio.to_thread(lambda: str(self.driver.current_url)):
            assert asyncio.get_running_loop().time() < deadline, f"still on {self.url} after {timeout} s"
            await asyncio.sleep(0.1)

    @property
    def text(self) -> str:
        return str(self.driver.find_element("tag name", "body").text)

    async def screenshot(self, name: str) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{name}.png"
        await asyncio.to_thread(self.driver.save_screenshot, str(path))
        assert path.stat().st_size > 5000, f"screenshot {path} is empty"
        return path


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        # Never a skip: the browser tests are how the web view is known to work.
        raise RuntimeError(f"{', '.join(missing)} not found: the web view's browser tests need Debian's Chromium; "
                           "run `make browser` (apt-get install -y chromium chromium-driver)")


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield Browser(driver, OUTPUT / request.node.name)
    finally:
        driver.quit()
