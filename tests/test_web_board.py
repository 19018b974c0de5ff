"""The board page in a real browser (headless Debian chromium through selenium): sorting by
click and keyboard, filters and search, a detail panel's numbers, no console errors, no
horizontal page scrolling at 1280 and 390 px (screenshots saved), and the page without
JavaScript; and the attack board's page: its ranking, no console errors, no horizontal scrolling,
reached from the board page. Skips when the browser is missing, except under CI (`CI` set),
where that fails.

Uses the committed page `leaderboard/boards/mnist5k-cnn.html` (with its JSON and records) when
it exists, else a page generated from fixture records (`tests/html_fixtures.py`); likewise the
committed `mnist5k-cnn.attacks.html`, else one built from the fixture attack records
(`tests/attack_fixtures.py`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from leaderboard.attack_board import ATTACK_BOARD_HTML, attack_board_files, build_attack_board
from leaderboard.build import admitted_records, board_attacks, build_json
from leaderboard.html import render_board_page
from leaderboard.formats import pct, with_interval
from tests.attack_fixtures import PROTOCOL, write_attacked_board
from tests.html_fixtures import fixture_board

pytestmark = pytest.mark.system

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select
except ImportError:  # checked by the `browser` fixture
    webdriver = None

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
COMMITTED = ROOT / "leaderboard" / "boards" / "mnist5k-cnn.html"
COMMITTED_ATTACKS = COMMITTED.with_name("mnist5k-cnn" + ATTACK_BOARD_HTML)
ROWS_JS = ("return Array.from(document.querySelectorAll('#board-table tbody tr'))"
           ".filter(r => !r.hidden).map(r => r.dataset.defense)")


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    missing += [] if webdriver is not None else ["selenium (pip install selenium)"]
    if missing:
        message = ("the real-browser tests need Debian's `chromium` and `chromium-driver` packages "
                   f"(apt-get install -y chromium chromium-driver) and selenium; missing: {', '.join(missing)}")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _driver(user_data: Path, javascript: bool = True):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={user_data}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 900)
    return driver


@pytest.fixture(scope="module")
def board_page(tmp_path_factory) -> tuple[str, dict, list[dict]]:
    """(file:// URL, board JSON, records): the committed default board page if there is one,
    else one generated from fixture records."""
    if COMMITTED.exists():
        board = json.loads(COMMITTED.with_suffix(".json").read_text())
        folder = ROOT / "leaderboard" / "records" / board["protocol"]["id"]
        records = [json.loads(p.read_text()) for p in sorted(folder.glob("*-seed*.json"))]
        return COMMITTED.as_uri(), board, records
    board, records = fixture_board()
    path = tmp_path_factory.mktemp("boards") / f"{board['protocol']['id']}.html"
    path.write_text(render_board_page(board, records))
    return path.as_uri(), board, records


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless chromium for the module, with a fresh profile."""
    _require_browser()
    driver = _driver(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, board_page):
    """The board page freshly loaded at 1280 px; after the test, no console errors."""
    url, board, records = board_page
    browser.set_window_size(1280, 900)
    browser.get(url)
    yield browser, board, records
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors


def _defenses(entries: list[dict]) -> list[str]:
    return [x["defense"] for x in entries]


def _header_button(driver, label: str):
    return driver.find_element(By.XPATH, f"//table[@id='board-table']/thead//th/button[normalize-space()='{label}']")


def _aria_sort(driver, label: str) -> str:
    return _header_button(driver, label).find_element(By.XPATH, "..").get_attribute("aria-sort")


def test_clicking_headers_sorts_by_the_underlying_values(page):
    driver, board, _ = page
    entries, primary = board["entries"], board["primary_eps"]
    assert driver.execute_script(ROWS_JS) == _defenses(entries)
    assert _aria_sort(driver, "rank") == "ascending"
    _header_button(driver, "clean (%)").click()
    assert driver.execute_script(ROWS_JS) == _defenses(sorted(entries, key=lambda x: x["clean_acc"], reverse=True))
    assert (_aria_sort(driver, "clean (%)"), _aria_sort(driver, "rank")) == ("descending", "none")
    _header_button(driver, "clean (%)").click()
    assert driver.execute_script(ROWS_JS) == _defenses(sorted(entries, key=lambda x: x["clean_acc"]))
    assert _aria_sort(driver, "clean (%)") == "ascending"
    _header_button(driver, "defense").click()
    assert driver.execute_script(ROWS_JS) == sorted(_defenses(entries))
    attack = board["attacks"][-1]
    _header_button(driver, f"{attack} (%)").click()
    by_attack = sorted(entries, key=lambda x: x["robust_acc"][attack][primary], reverse=True)
    assert driver.execute_script(ROWS_JS) == _defenses(by_attack)


def test_the_keyboard_sorts_too(page):
    driver, board, _ = page
    entries, primary = board["entries"], board["primary_eps"]
    button = _header_button(driver, "worst class (%)")
    button.send_keys(Keys.ENTER)
    by_class = sorted(entries, key=lambda x: x["worst_class_robust_acc"][primary], reverse=True)
    assert driver.execute_script(ROWS_JS) == _defenses(by_class)
    assert _aria_sort(driver, "worst class (%)") == "descending"
    button.send_keys(Keys.SPACE)
    ascending = sorted(entries, key=lambda x: x["worst_class_robust_acc"][primary])
    assert driver.execute_script(ROWS_JS) == _defenses(ascending)
    assert _aria_sort(driver, "worst class (%)") == "ascending"
    assert driver.switch_to.active_element == button
    rank = _header_button(driver, "rank")
    rank.send_keys(Keys.ENTER)
    assert driver.execute_script(ROWS_JS) == _defenses(entries)
    rank.send_keys(Keys.ENTER)
    assert driver.execute_script(ROWS_JS) == _defenses(sorted(entries, key=lambda x: x["rank"], reverse=True))


def test_tab_reaches_the_controls_and_the_sort_buttons(page):
    driver, _, _ = page
    driver.find_element(By.ID, "filter-search").click()
    reached = []
    for _ in range(12):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(driver.execute_script("const e = document.activeElement; return e.id || e.className"))
    assert {"filter-fidelity", "filter-architecture", "filter-flagged", "sort"} <= set(reached)


def test_filters_and_search(page):
    driver, board, _ = page
    entries = board["entries"]
    driver.find_element(By.ID, "filter-flagged").click()
    assert driver.execute_script(ROWS_JS) == _defenses([x for x in entries if not x["sanity_fired"]])
    assert "of" in driver.find_element(By.ID, "filter-status").text
    driver.find_element(By.ID, "filter-flagged").click()
    assert driver.execute_script(ROWS_JS) == _defenses(entries)
    for ident, field in (("filter-fidelity", lambda x: x["fidelity"]["loss"]),
                         ("filter-architecture", lambda x: x["architecture"])):
        choice = Select(driver.find_element(By.ID, ident))
        value = sorted({field(x) for x in entries})[-1]
        choice.select_by_value(value)
        assert driver.execute_script(ROWS_JS) == _defenses([x for x in entries if field(x) == value])
        choice.select_by_value("")
    query = entries[-1]["defense"][:4].upper()
    driver.find_element(By.ID, "filter-search").send_keys(query)
    assert driver.execute_script(ROWS_JS) == _defenses([x for x in entries if query.lower() in x["defense"].lower()])
    driver.find_element(By.ID, "filter-search").send_keys("zzz-no-such-defense")
    assert driver.execute_script(ROWS_JS) == []
    assert driver.find_element(By.ID, "filter-empty").is_displayed()
    for ident in ("filter-search", "filter-fidelity", "filter-architecture", "filter-flagged"):
        label = driver.find_element(By.CSS_SELECTOR, f"label[for='{ident}']")
        assert label.text.strip()


def test_a_detail_panel_shows_the_records_numbers(page):
    driver, board, records = page
    entry = next(x for x in board["entries"] if x["n_seeds"] == 1)
    record = next(r for r in records if r["defense"]["id"] == entry["defense"])
    row = driver.find_element(By.CSS_SELECTOR, f"#board-table tr[data-defense='{entry['defense']}']")
    row.find_element(By.CSS_SELECTOR, "a.more").click()
    panel = driver.find_element(By.CSS_SELECTOR, f"details.entry[data-defense='{entry['defense']}']")
    assert panel.get_property("open")

    def texts(css: str) -> list[list[str]]:
        return [[c.get_attribute("textContent") for c in tr.find_elements(By.CSS_SELECTOR, "td")]
                for tr in panel.find_elements(By.CSS_SELECTOR, f"{css} tbody tr")]

    assert [[int(c) for c in row] for row in texts("table.confusion")] == record["confusion_adversarial"]["matrix"]
    fab = texts("table.input-margins")[0]
    assert float(fab[0]) == pytest.approx(record["margins"]["input"]["median"], rel=1e-3)
    bisection = texts("table.input-margins")[1]
    assert float(bisection[0]) == pytest.approx(record["margins"]["input_bisection"]["median"], rel=1e-3)
    eps_rows = texts("table.eps-table")
    for values, attack in zip(eps_rows, board["attacks"]):
        assert [v.split(" ")[0] for v in values] == [pct(record["robust_acc"][attack][e]) for e in board["eps"]]
        assert values == [with_interval(entry["robust_acc"][attack][e], entry["intervals"]["robust_acc"][attack][e])
                          for e in board["eps"]]
    links = [a.get_attribute("href") for a in panel.find_elements(By.CSS_SELECTOR, ".links a")]
    folder = f"/records/{board['protocol']['id']}/"
    assert links[0].endswith(f"{folder}{entry['defense']}-seed{record['seed']}.json")
    assert links[1].endswith(f"{folder}{record['flags']['file']}")
    assert panel.find_element(By.CSS_SELECTOR, "svg.chart").is_displayed()


@pytest.mark.parametrize("width", [1280, 390])
def test_fits_the_screen_and_screenshots(page, width, tmp_path):
    driver, _, _ = page
    artifacts = Path(os.environ.get("ATBENCH_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(width, 900)
    driver.refresh()
    assert driver.execute_script("return window.innerWidth") == width
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert driver.save_screenshot(str(artifacts / f"board-{width}.png"))
    driver.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_without_javascript_the_static_page_is_complete(board_page, tmp_path_factory):
    _require_browser()
    url, board, _ = board_page
    driver = _driver(tmp_path_factory.mktemp("chromium-nojs"), javascript=False)
    try:
        driver.get(url)
        rows = driver.find_elements(By.CSS_SELECTOR, "#board-table tbody tr")
        assert [r.get_dom_attribute("data-defense") for r in rows] == _defenses(board["entries"])
        assert [int(r.find_element(By.CSS_SELECTOR, "td").get_dom_attribute("data-value")) for r in rows] == \
            [x["rank"] for x in board["entries"]]
        assert not driver.find_element(By.ID, "filters").is_displayed(), "the script ran"
        heads = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#board-table thead th")]
        first, x = rows[0].find_elements(By.CSS_SELECTOR, "td"), board["entries"][0]
        assert first[heads.index("clean (%)")].text == with_interval(x["clean_acc"], x["intervals"]["clean_acc"])
        assert len(driver.find_elements(By.CSS_SELECTOR, "details.entry")) == len(board["entries"])
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def attack_page(tmp_path_factory) -> tuple[str, dict]:
    """(file:// URL, attack board JSON): the committed attack board page if there is one, else one
    built from the fixture attack records."""
    if COMMITTED_ATTACKS.exists():
        return COMMITTED_ATTACKS.as_uri(), json.loads(COMMITTED_ATTACKS.with_suffix(".json").read_text())
    root = tmp_path_factory.mktemp("attacked")
    records, attacks, _ = write_attacked_board(root)
    admitted = admitted_records(records, PROTOCOL)
    submitted = board_attacks(attacks, PROTOCOL, admitted)
    board = build_attack_board(build_json(admitted, submitted), submitted)
    path = root / f"{PROTOCOL}{ATTACK_BOARD_HTML}"
    path.write_bytes(attack_board_files(board)[ATTACK_BOARD_HTML])
    return path.as_uri(), board


@pytest.mark.parametrize("width", [1280, 390])
def test_the_attack_board_page_shows_its_ranking_and_fits_the_screen(browser, attack_page, width, tmp_path):
    url, board = attack_page
    browser.set_window_size(width, 900)
    browser.get(url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#table-attack-table tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td").get_attribute("textContent") for r in rows] == \
        [a["attack"] for a in board["attacks"]]
    assert browser.find_element(By.TAG_NAME, "h1").text == board["view"]["title"]
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    artifacts = Path(os.environ.get("ATBENCH_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(artifacts / f"attack-board-{width}.png"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors


def test_the_board_page_links_its_attack_board(page):
    driver, board, _ = page
    if not any(x.get("best_known") for x in board["entries"]):
        pytest.skip("this board has no attack records, so no attack board")
    driver.find_element(By.LINK_TEXT, "Attack board").click()
    assert driver.title.startswith("Submitted attacks: ")
    assert driver.find_elements(By.CSS_SELECTOR, "#table-attack-table tbody tr")
