"""A real browser against the chat demo: Debian's headless Chromium driven by Playwright.

Never downloads a browser: it launches /usr/bin/chromium (`apt-get install -y chromium`; .ci/run and
scripts/test install it when missing). Every wait is on the page's text, with a deadline.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from .helpers import run, serving

CHROMIUM = Path(os.environ.get("WSCORE_CHROMIUM", "/usr/bin/chromium"))
# What this kind of machine (a container, no GPU, no network beyond the registries) needs.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WAIT_MS = 20_000

pytestmark = pytest.mark.browser


async def _connected(page: Page, url: str, name: str) -> None:
    await page.goto(url)
    await expect(page.locator("#status")).to_have_text(f"connected as {name}", timeout=WAIT_MS)


def test_two_browser_pages_chat_and_see_the_server_go_away(unused_port: int) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
    url = f"http://127.0.0.1:{unused_port}/"

    async def main() -> None:
        async with (
            serving("chat", "--port", str(unused_port), ready=f"open {url}") as server,
            async_playwright() as pw,
        ):
            # launch() gives the browser a fresh, temporary --user-data-dir.
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                one = await browser.new_page()
                await _connected(one, url, "guest-1")
                two = await browser.new_page()
                await _connected(two, url, "guest-2")
                await expect(one.locator("#log")).to_contain_text("* guest-2 joined", timeout=WAIT_MS)

                await two.fill("#text", "hello from page two")
                await two.press("#text", "Enter")
                await expect(one.locator("#log")).to_contain_text(
                    "guest-2: hello from page two", timeout=WAIT_MS
                )
                await expect(two.locator("#log")).to_contain_text(
                    "guest-2 (you): hello from page two", timeout=WAIT_MS
                )
                await one.fill("#text", "and back from one")
                await one.click("#send")
                await expect(two.locator("#log")).to_contain_text(
                    "guest-1: and back from one", timeout=WAIT_MS
                )

                # Ctrl-C on the server: both pages learn it went away (close code 1001).
                server.interrupt()
                for page in (one, two):
                    await expect(page.locator("#status")).to_have_text(
                        "server disconnected (1001 server shutting down)", timeout=WAIT_MS
                    )
                    await expect(page.locator("#text")).to_be_disabled(timeout=WAIT_MS)
                assert await server.finish() == 0, server.output
                assert "stopping: closing 2 connection(s) with 1001 (going away)" in server.stdout
            finally:
                await browser.close()

    run(main(), timeout=110)


def test_names_members_and_reconnecting_after_a_server_restart(unused_port: int) -> None:
    """A name from ?name= or from the name field; the member list on every page; when the server
    goes away the pages say so and that they are reconnecting, and rejoin (under the same names)
    once a server runs on that port again."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
    url = f"http://127.0.0.1:{unused_port}/"

    async def main() -> None:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                async with serving("chat", "--port", str(unused_port), ready=f"open {url}") as server:
                    one = await browser.new_page()
                    await _connected(one, url + "?name=alice", "alice")
                    await expect(one.locator("#name")).to_have_value("alice", timeout=WAIT_MS)
                    await expect(one.locator("#members li")).to_have_text(["alice"], timeout=WAIT_MS)

                    two = await browser.new_page()
                    await _connected(two, url, "guest-1")
                    await expect(one.locator("#members li")).to_have_text(
                        ["alice", "guest-1"], timeout=WAIT_MS
                    )
                    await two.fill("#name", "bob")
                    await two.click("#rename")
                    await expect(two.locator("#status")).to_have_text("connected as bob", timeout=WAIT_MS)
                    assert two.url.endswith("/?name=bob"), two.url  # a reload keeps the name
                    await expect(one.locator("#log")).to_contain_text("* guest-1 is now bob", timeout=WAIT_MS)
                    for page in (one, two):
                        await expect(page.locator("#members li")).to_have_text(
                            ["alice", "bob"], timeout=WAIT_MS
                        )
                        await expect(page.locator("#count")).to_have_text("2", timeout=WAIT_MS)
                    await expect(two.locator("#members li.me")).to_have_text("bob", timeout=WAIT_MS)

                    # The server stops: each page says why, then that it is reconnecting.
                    server.interrupt()
                    for page in (one, two):
                        await expect(page.locator("#status")).to_have_text(
                            "server disconnected (1001 server shutting down)", timeout=WAIT_MS
                        )
                        await expect(page.locator("#retry")).to_contain_text("reconnecting…", timeout=WAIT_MS)
                        await expect(page.locator("#members li")).to_have_count(0, timeout=WAIT_MS)
                        await expect(page.locator("#text")).to_be_disabled(timeout=WAIT_MS)
                    assert await server.finish() == 0, server.output
                    # Attempts against the stopped server fail; the status still says why it went.
                    await expect(one.locator("#retry")).to_contain_text("attempt 2", timeout=WAIT_MS)
                    await expect(one.locator("#status")).to_have_text(
                        "server disconnected (1001 server shutting down)"
                    )

                # A new server on the same port: both pages rejoin under their names.
                async with serving("chat", "--port", str(unused_port), ready=f"open {url}") as server:
                    await expect(one.locator("#status")).to_have_text("connected as alice", timeout=WAIT_MS)
                    await expect(two.locator("#status")).to_have_text("connected as bob", timeout=WAIT_MS)
                    for page in (one, two):
                        await expect(page.locator("#retry")).to_have_text("", timeout=WAIT_MS)
                        await expect(page.locator("#log")).to_contain_text("reconnected", timeout=WAIT_MS)
                        await expect(page.locator("#members li")).to_have_count(2, timeout=WAIT_MS)
                        await expect(page.locator("#members")).to_contain_text("alice", timeout=WAIT_MS)
                        await expect(page.locator("#members")).to_contain_text("bob", timeout=WAIT_MS)
                    await two.fill("#text", "back again")
                    await two.press("#text", "Enter")
                    await expect(one.locator("#log")).to_contain_text("bob: back again", timeout=WAIT_MS)
            finally:
                await browser.close()

    run(main(), timeout=110)
