"""Headless Chromium (Debian's package) through Selenium, each blocking call in a thread so the
stack that serves the pages keeps running on the test's event loop."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists() and shutil.which(path.name) is None:
            return f"{path} is not installed (Debian packages chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


class Browser:
    def __init__(self, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", "--no-first-run", "--no-default-browser-check",
                    "--disable-extensions", "--disable-background-networking", "--proxy-server=direct://",
                    "--proxy-bypass-list=*", f"--user-data-dir={profile}",
                    # Only for the direct check against the admin listener: its server certificate is
                    # the dev CA's; what is under test there is the *client* certificate requirement.
                    "--ignore-certificate-errors"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else Path(shutil.which("chromedriver") or "chromedriver")
        self.driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
        self.driver.set_page_load_timeout(20)

    @classmethod
    async def start(cls, profile: Path) -> Browser:
        return await asyncio.to_thread(cls, profile)

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def source(self) -> str:
        return await self.run(lambda: self.driver.page_source)

    async def title(self) -> str:
        return await self.run(lambda: self.driver.title)

    async def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return await self.run(self.driver.find_element, By.CSS_SELECTOR, selector)

    async def click(self, selector: str) -> None:
        element = await self.css(selector)
        await self.run(element.click)

    async def wait_for(self, selector: str, timeout: float = 15.0) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(self.driver, timeout)
        return await self.run(wait.until, ec.presence_of_element_located((By.CSS_SELECTOR, selector)))

    async def wait_for_text(self, text: str, timeout: float = 15.0) -> str:
        """The page source once it contains ``text`` (a clicked form's answer is a navigation the
        click does not wait for)."""
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(self.driver, timeout)
        await self.run(wait.until, lambda driver: text in driver.page_source)
        return await self.source()

    async def script(self, js: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, js, *args)

    async def console(self) -> list[dict[str, Any]]:
        return await self.run(self.driver.get_log, "browser")

    async def screenshot(self, path: Path) -> Path:
        def shoot() -> None:  # the whole page, not just the viewport (bounded at 3000 px)
            height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": 1400, "height": max(700, min(height, 3000)), "deviceScaleFactor": 1, "mobile": False})
            try:
                self.driver.save_screenshot(str(path))
            finally:
                self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        await self.run(shoot)
        return path

    async def quit(self) -> None:
        await self.run(self.driver.quit)
