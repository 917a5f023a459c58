"""Two Chromium pages on two different worker processes of `wscore chat --workers 2 --redis ...`
see each other's messages and member lists, also after Redis restarts under them.

The page shows the worker serving it ("· worker 2 (pid N)"); the test opens pages until two show
different workers, which proves they are served by different processes.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)

from .helpers import run, serving
from .test_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS

pytestmark = pytest.mark.browser

_WORKER = re.compile(r"worker (\d+) \(pid (\d+)\)")


async def _page_on_a_worker(browser: Browser, url: str) -> tuple[Page, str]:
    page = await browser.new_page()
    await page.goto(url)
    await expect(page.locator("#worker")).to_contain_text("worker", timeout=WAIT_MS)
    text = await page.locator("#worker").inner_text()
    match = _WORKER.search(text)
    assert match, text
    return page, match[0]


def test_two_pages_on_two_workers_share_the_room_across_a_redis_restart(
    redis_server: RedisServer,  # noqa: F811
    unused_port: int,
) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
    url = f"http://127.0.0.1:{unused_port}/"

    async def main() -> None:
        args = ("--workers", "2", "--redis", redis_server.url, "--port", str(unused_port))
        async with serving("chat", *args, ready="2 workers on") as server, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                one, first = await _page_on_a_worker(browser, url + "?name=alice")
                for attempt in range(40):  # the kernel spreads connections; open until one differs
                    two, second = await _page_on_a_worker(browser, url + f"?name=bob{attempt}")
                    if second != first:
                        break
                    await two.close()
                else:
                    raise AssertionError("40 pages all landed on one worker")
                bob = f"bob{attempt}"
                assert first.split()[1] != second.split()[1], (first, second)  # different worker numbers
                # The member list is every worker's in worker order (ChatRoom's docstring), so whose
                # name comes first depends on which worker the kernel gave alice.
                room = ["alice", bob] if int(first.split()[1]) < int(second.split()[1]) else [bob, "alice"]

                for page in (one, two):  # both member lists have both names, from two processes
                    await expect(page.locator("#members li")).to_have_text(room, timeout=WAIT_MS)
                await two.fill("#text", "hello from the second worker")
                await two.press("#text", "Enter")
                await expect(one.locator("#log")).to_contain_text(
                    f"{bob}: hello from the second worker", timeout=WAIT_MS
                )

                # Redis stops and starts again: the workers reconnect and the room works again.
                redis_server.stop()
                await one.fill("#text", "while redis is down")
                await one.press("#text", "Enter")
                await expect(one.locator("#log")).to_contain_text("* not delivered", timeout=WAIT_MS)
                redis_server.start()
                for attempt in range(40):
                    await one.fill("#text", f"redis is back {attempt}")
                    await one.press("#text", "Enter")
                    try:
                        await expect(two.locator("#log")).to_contain_text(
                            f"alice: redis is back {attempt}", timeout=500
                        )
                        break
                    except AssertionError:
                        continue  # still reconnecting (backoff); say it again
                else:
                    raise AssertionError("no message crossed the workers after Redis restarted")
                await expect(two.locator("#members li")).to_have_text(room, timeout=WAIT_MS)

                server.interrupt()  # Ctrl-C: both pages are told the server went away (1001)
                for page in (one, two):
                    await expect(page.locator("#status")).to_have_text(
                        "server disconnected (1001 server shutting down)", timeout=WAIT_MS
                    )
                assert await server.finish() == 0, server.output
            finally:
                await browser.close()

    run(main(), timeout=110)
