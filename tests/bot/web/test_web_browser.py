"""The web view in a real headless Chromium: every page renders (a screenshot of each is kept under
test-output/web/<test>/), the history chart draws the points of three stored runs and each opens its run, and a
private repository's pages go through GitHub's OAuth web flow: a reader sees them, a non-member gets 404."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from tests.bot.web.conftest import REPO, Browser

CHART = "return window.tunebotCharts && window.tunebotCharts[arguments[0]] ? "


async def _point_px(browser: Browser, chart: str, i: int) -> tuple[float, float, float, float]:
    """Where point `i` of a history chart is drawn, relative to the plotting area's centre (Selenium's origin)."""
    return tuple(await browser.js(
        "var c = window.tunebotCharts[arguments[0]].u, i = arguments[1];"
        "var r = c.over.getBoundingClientRect();"
        "return [c.valToPos(c.data[0][i], 'x') - r.width / 2, c.valToPos(c.data[1][i], 'y') - r.height / 2,"
        "        r.width, r.height];", chart, i))


async def test_public_repository_pages_runs_run_history_leaderboard(web_bot: Any, browser: Browser) -> None:
    wb = await web_bot()
    main = await wb.eval_at_main_commits(3)
    train = await wb.trained_and_compared()

    # Runs list: every run of the repository with state, who, what and scores.
    await browser.get(f"{wb.url}/ui/{REPO}")
    await browser.screenshot("runs")
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    listed = [r.get_attribute("data-run") for r in rows]
    assert set(listed) >= {train, *(run for _, run in main)}
    first = rows[listed.index(train)].text
    assert "succeeded" in first and "Codertocat" in first and "/train tiny" in first and "88.3" in first

    # Run page: recipe, loss curve drawn by uPlot, scores per subject, comparison with the flips.
    await browser.get(f"{wb.url}/ui/{REPO}/runs/{train}")
    assert await browser.js(CHART + "window.tunebotCharts['loss-chart'].u.data[1] : null", "loss-chart") == \
        [2.5, 2.1, 1.7, 1.4]
    await browser.screenshot("run")
    text = browser.text
    assert "lora_rank" in text and "agronomy" in text and "anatomy" in text
    # No tracker configured: TensorBoard's event files, in the artifact (links: tests/bot/web/test_tracker_link.py)
    assert f"in the artifact tunebot-{train}" in browser.driver.find_element(By.ID, "tracker").text
    cmp = browser.driver.find_element(By.CSS_SELECTOR, "#comparison").text
    assert "base-model" in cmp and "improved" in cmp and "+51.7" in cmp
    assert "2 right→wrong, 33 wrong→right" in cmp

    # History of main: the three evaluated commits, oldest first, with the band; each point opens its run.
    await browser.get(f"{wb.url}/ui/{REPO}/history")
    await browser.screenshot("history")
    data = await browser.js(CHART + "window.tunebotCharts[arguments[0]].u.data : null", "history-0")
    assert data is not None, browser.text
    xs, ys, lows, highs = data
    assert len(xs) == 3 and xs == sorted(xs)
    assert ys == [round(100 * c / 60, 3) for c in await _correct(wb, [run for _, run in main])]
    assert all(lo < y < hi for lo, y, hi in zip(lows, ys, highs, strict=True))
    for i, (_, run_id) in enumerate(main):
        await browser.get(f"{wb.url}/ui/{REPO}/history")
        dx, dy, _, _ = await _point_px(browser, "history-0", i)
        over = browser.driver.find_element(By.CSS_SELECTOR, "#history-0 .u-over")
        await browser.call(lambda over=over, dx=dx, dy=dy: ActionChains(browser.driver)
                           .move_to_element_with_offset(over, int(dx), int(dy)).pause(0.2).click().perform())
        await browser.call(lambda: None)
        assert browser.url.endswith(f"/ui/{REPO}/runs/{run_id}"), (i, browser.url)

    # Leaderboard: the repository's best result per content key.
    await browser.get(f"{wb.url}/ui/{REPO}/leaderboard")
    await browser.screenshot("leaderboard")
    board = browser.driver.find_element(By.CSS_SELECTOR, "table.leaderboard[data-benchmark=cmmlu]").text
    assert train in board and "88.3" in board


async def _correct(wb: Any, run_ids: list[str]) -> list[int]:
    out = []
    for rid in run_ids:
        results = await wb.bot.service.store.load_results(rid)
        out.append(results.benchmarks["cmmlu"].correct)
    return out


async def _sign_in(browser: Browser, login: str) -> None:
    """On the fake github.com's authorize page: type the login and approve."""
    assert "/login/oauth/authorize" in browser.url, browser.url
    field = browser.driver.find_element(By.ID, "login_field")
    await browser.call(field.send_keys, login)
    await browser.call(browser.driver.find_element(By.ID, "authorize").click)
    await browser.wait_until_left("/login/oauth/authorize")


async def test_private_repository_needs_login_and_read_permission(web_bot: Any, browser: Browser) -> None:
    wb = await web_bot(private=True)
    wb.bot.repo.set_permission("alice", "read")
    [(_, run_id)] = await wb.eval_at_main_commits(1)

    # Anonymous: redirected to the login, which sends the browser to GitHub's authorize page.
    await browser.get(f"{wb.url}/ui/{REPO}/runs/{run_id}")
    assert "/login/oauth/authorize" in browser.url and "client_id=Iv1.webviewtests01" in browser.url
    await browser.screenshot("github-authorize")
    await _sign_in(browser, "alice")
    assert browser.url == f"{wb.url}/ui/{REPO}/runs/{run_id}"
    assert browser.driver.find_element(By.ID, "viewer").text == "alice"
    assert run_id in browser.driver.find_element(By.ID, "run-id").text
    await browser.screenshot("private-run-as-reader")
    [cookie] = [c for c in browser.driver.get_cookies() if c["name"] == "tunebot_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain http here
    assert "alice" not in cookie["value"]  # encrypted, not merely signed
    for page in ("", "/history", "/leaderboard"):
        await browser.get(f"{wb.url}/ui/{REPO}{page}")
        assert "Not found" not in browser.text and run_id in browser.driver.page_source

    # Someone without access to the repository: after the same sign-in, 404 (as for a repository that isn't there).
    await browser.call(browser.driver.delete_all_cookies)
    await browser.get(f"{wb.url}/ui/{REPO}")
    await _sign_in(browser, "mallory")
    assert browser.url == f"{wb.url}/ui/{REPO}"
    assert browser.driver.find_element(By.ID, "not-found") is not None
    assert run_id not in browser.driver.page_source
    await browser.screenshot("private-as-non-member")
    status = await browser.js("return fetch(location.href).then(r => r.status)")
    assert status == 404
