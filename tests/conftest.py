"""Shared fixtures: a headless Chromium (Debian's `chromium` and `chromium-driver`, driven by selenium) for the
tests that look at pages in a real browser. Where either is missing those tests skip with one line saying how to
get them (`make test` installs them where it can: root and apt)."""

from __future__ import annotations

import shutil
import socket

import pytest


def free_port() -> int:
    """A TCP port nobody listens on now (two test runs on one machine must not share a port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _which(names) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture
def browser():
    """A headless Chromium that resolves no host but localhost (nothing outside this machine can be reached)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (make setup installs it)")
    binary, driver = _which(CHROMIUM), _which(("chromedriver",))
    if binary is None or driver is None:
        pytest.skip("no Chromium here: `sudo apt-get install chromium chromium-driver` (make test does it as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield chrome
    chrome.quit()


# The slowest test files first (measured with --durations; a scheduling hint, nothing depends on it): `make test` runs
# two workers, a file at a time each (--dist loadfile --no-loadscope-reorder keeps this order), so the smoke notebooks
# (about 40 % of the time) start at once on one worker while the other takes the rest, heaviest first.
SLOW_FIRST = ("test_notebooks.py", "test_cache.py", "test_other_kernels.py", "test_jupyterlab.py", "test_models.py",
              "test_gpu_session.py", "test_faults.py", "test_generate.py", "test_integrations.py", "test_samplers.py",
              "test_train.py", "test_shapes.py", "test_metrics.py", "test_architecture.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order
