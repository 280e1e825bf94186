"""The explain page in a real browser (Debian's chromium through playwright): the first
worked example's walk-through, controls, zero network requests, the sigmoid and NaN
examples, big graphs, and a label-injection attempt. Screenshots go to test-output/.

Skips when playwright or chromium is missing, unless TAPEGRAD_REQUIRE_BROWSER=1.
"""
import os
import shutil
from pathlib import Path

import pytest

import tapegrad
from tapegrad import explain_page
from tapegrad.graph import fmt

OUTPUT = Path(__file__).parents[1] / "test-output"
EVIL = "</script><script>window.pwned=1</script>"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _missing(reason):
    if os.environ.get("TAPEGRAD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and TAPEGRAD_REQUIRE_BROWSER=1")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright; never `playwright install`)")
    chromium = (os.environ.get("TAPEGRAD_CHROMIUM") or shutil.which("chromium")
                or "/usr/bin/chromium")
    if not Path(chromium).exists():
        _missing("Debian's chromium is not installed "
                 "(apt-get install --no-install-recommends chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        yield b
        b.close()


class Page:
    """One loaded explain page, recording every request, console message and page error."""

    def __init__(self, browser, path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 800})
        self.requests, self.console, self.errors = [], [], []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(Path(path).resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=5000)

    def text(self, selector):
        return self.page.text_content(selector)

    def node(self, name):  # the node's index, by its data-name
        for el in self.page.query_selector_all("#graph .node"):
            if el.get_attribute("data-name") == name:
                return int(el.get_attribute("id").removeprefix("node-"))
        raise KeyError(name)

    def step(self, n=1, key="ArrowRight"):
        for _ in range(n):
            self.page.keyboard.press(key)

    def counter(self):
        return int(self.page.get_attribute("#step-counter", "data-step"))

    def check_clean(self):
        """Zero network requests (only the page's own file), no errors, no CSP violations."""
        local = all(u.startswith(("file:", "data:")) for u in self.requests)
        assert self.requests and local, self.requests
        assert not self.errors, self.errors
        assert not [m for m in self.console if m.startswith("error")], self.console


@pytest.fixture
def load(browser, tmp_path):
    pages = []

    def load(root, name="page", **kwargs):
        path = explain_page.explain(root, tmp_path / f"{name}.html", **kwargs)
        pages.append(Page(browser, path))
        return pages[-1]

    yield load
    for p in pages:
        p.page.close()


@pytest.fixture(scope="module", autouse=True)
def output_dir():
    OUTPUT.mkdir(exist_ok=True)


def test_worked_example_walk_through(load, backend):
    x, y = backend.Var(3.0), backend.Var(4.0)
    f = x * x + x * y
    p = load(f, names={"x": x, "y": y})
    ix, iy, i1, i2, root = (p.node(n) for n in ("x", "y", "n1", "n2", "f"))
    value = lambda i: p.text(f"#node-{i}-value")  # noqa: E731
    grad = lambda i: p.text(f"#node-{i}-grad")  # noqa: E731
    assert [value(i) for i in (ix, i1, root)] == ["?", "?", "?"] and p.counter() == 0

    p.step()  # the leaves
    assert (value(ix), value(iy), value(i1)) == ("3", "4", "?")
    forward = []
    for _ in range(3):
        p.step()
        forward.append(p.text("#step-text"))
    assert (value(i1), value(i2), value(root)) == ("9", "12", "21")
    assert forward == ["n1 = x × x = 3 × 3 = 9", "n2 = x × y = 3 × 4 = 12",
                       "f = n1 + n2 = 9 + 12 = 21"]
    assert grad(root) == "" and grad(ix) == ""

    p.step()  # the seed
    assert grad(root) == "1" and p.text("#phase") == "Backward pass: the seed"

    rules = []
    for _ in range(6):
        p.step()
        rules.append(p.text("#step-text"))
    assert "× : ∂/∂a = grad × b = 1 × 4 = 4" in rules
    assert (grad(i1), grad(i2), grad(ix), grad(iy)) == ("1", "1", "10", "3")
    parts = p.page.eval_on_selector_all(f"#leaf-{ix}-sum .part",
                                        "els => els.map(e => e.textContent)")
    assert parts == ["3", "3", "4"] and p.text(f"#leaf-{ix}-sum") == "3 + 3 + 4 = 10"
    assert p.text(f"#leaf-{iy}-sum") == "3" and p.text(f"#leaf-{ix}-grad") == "10"
    assert p.text(f"#edge-{i2}-0-label") == "4"  # x's edge into x*y

    p.step()
    assert p.text("#step-text") == "Done. Leaf gradients: x.grad = 3 + 3 + 4 = 10; y.grad = 3"
    p.page.screenshot(path=str(OUTPUT / f"explain-seed-{backend.__name__}.png"))
    assert (OUTPUT / f"explain-seed-{backend.__name__}.png").stat().st_size > 10_000

    p.step(3, key="ArrowLeft")  # back to just after x*x's second edge
    assert p.counter() == 9 and p.text(f"#leaf-{ix}-sum") == "3 + 3 = 6" and grad(iy) == ""
    p.page.click("#btn-reset")
    assert p.counter() == 0 and value(root) == "?" and p.text(f"#leaf-{ix}-sum") == ""
    p.page.keyboard.press("End")
    assert p.counter() == 12 and grad(ix) == "10"
    p.check_clean()


def test_play_pause_and_speed(load):
    x, y = tapegrad.Var(3.0), tapegrad.Var(4.0)
    p = load(x * x + x * y, names={"x": x, "y": y})
    assert p.page.input_value("#speed") == "1"
    p.page.keyboard.press("+")
    p.page.keyboard.press("+")
    assert p.page.input_value("#speed") == "4"
    p.page.keyboard.press("-")
    assert p.page.input_value("#speed") == "2"
    p.page.select_option("#speed", "120")
    p.page.keyboard.press(" ")  # play
    assert p.text("#btn-play") == "❚❚ Pause"
    p.page.wait_for_selector("#step-counter[data-step='12']", timeout=10000)
    p.page.wait_for_function(  # stops at the end
        "document.querySelector('#btn-play').textContent.trim() === '▶ Play'", timeout=5000)
    assert p.text(f"#node-{p.node('x')}-grad") == "10"
    # Play from the start, pause: whenever the pause lands (a loaded machine may have
    # run a few ticks first), the counter stays where it stopped.
    p.page.select_option("#speed", "4")
    p.page.click("#btn-play")
    p.page.keyboard.press("k")
    stopped = p.counter()
    p.page.wait_for_timeout(600)  # 2.4 ticks at 4 steps/s, had it kept playing
    assert p.counter() == stopped < 12 and p.text("#btn-play") == "▶ Play"
    p.check_clean()


def test_sigmoid_example(load):
    w, x = tapegrad.Var(0.5), tapegrad.Var(2.0)
    p = load(tapegrad.sigmoid(w * x), names={"w": w, "x": x})
    p.step(3)
    assert p.text(f"#node-{p.node('f')}-value") == "0.7311"
    assert p.text("#step-text") == "f = sigmoid(n1) = sigmoid(1) = 0.7311"
    p.step(2)
    assert p.text("#step-text") == ("σ : ∂/∂a = grad × out × (1 − out) = "
                                    "1 × 0.7311 × 0.2689 = 0.1966")
    assert p.text(f"#node-{p.node('n1')}-grad") == "0.1966"
    p.step(2)
    assert p.text(f"#leaf-{p.node('w')}-sum") == "0.3932"
    assert p.text(f"#leaf-{p.node('x')}-sum") == "0.0983"
    p.page.screenshot(path=str(OUTPUT / "explain-sigmoid.png"))
    p.check_clean()


def test_nan_graph_is_highlighted(load):
    a, b = tapegrad.Var(-1.0), tapegrad.Var(2.0)
    f = tapegrad.log(a) * b + b
    p = load(f, names={"a": a, "b": b}, anomalies={f: "loss is not finite"})
    alert = p.text("#nonfinite")
    assert "first appears at n1: n1 = log(a) = log(-1) = nan" in alert
    assert "drawn in red" in alert and p.page.is_visible("#nonfinite")
    assert "loss is not finite" in p.text("#anomalies") and p.page.is_visible("#anomalies")
    red = p.page.eval_on_selector_all("#graph .node.nonfinite",
                                      "els => els.map(e => e.dataset.name)")
    assert sorted(red) == ["b", "f", "n1", "n2"]
    fill = p.page.eval_on_selector(f"#node-{p.node('n1')} rect", "r => getComputedStyle(r).fill")
    assert fill == "rgb(254, 226, 226)"
    p.page.keyboard.press("End")
    assert p.text(f"#node-{p.node('n1')}-value") == "nan"
    assert p.text(f"#leaf-{p.node('b')}-sum") == "1 + nan = nan"
    p.page.screenshot(path=str(OUTPUT / "explain-nan.png"))
    p.check_clean()


def test_label_injection_does_not_run(load):
    x = tapegrad.Var(1.0)
    f = x * 2.0
    img = '<img src=x onerror="window.pwned=2">'
    p = load(f, names={EVIL: x, img: f}, anomalies={x: EVIL}, title=EVIL)
    p.page.keyboard.press("End")
    assert p.page.evaluate("typeof window.pwned") == "undefined"
    assert p.page.eval_on_selector_all("img, iframe", "els => els.length") == 0
    assert p.page.eval_on_selector_all("script", "els => els.length") == 2  # data + code
    assert p.text("#title") == EVIL and p.page.title() == EVIL
    assert p.page.get_attribute(f"#node-{p.node(EVIL)}", "data-name") == EVIL
    assert p.text(f"#leaf-{p.node(EVIL)}") == EVIL + "1" + "2"  # name, value, grad
    assert p.page.get_attribute(f"#node-{p.node(img)}", "data-op") == "mul"
    assert EVIL in p.text("#anomalies")
    p.check_clean()


def test_big_graph_is_compact_and_says_so(load):
    x = tapegrad.Var(0.1)
    s = x
    for _ in range(150):
        s = tapegrad.sin(s * x + 1.0)  # 4 nodes a round: 601
    p = load(s, names={"x": x})
    note = p.text("#compact-note")
    assert "601 nodes, more than 500" in note and "pan" in note
    assert p.page.eval_on_selector_all("#graph .node", "els => els.length") == 601
    assert p.page.eval_on_selector_all("#graph .node text", "els => els.length") == 0
    p.page.keyboard.press("End")
    total = int(p.text("#step-counter").split("/")[1])
    assert p.counter() == total
    summary = p.text(f"#leaf-{p.node('x')}-sum")
    assert "… 143 more …" in summary and summary.endswith(" = " + fmt(_grad(s, x)))
    p.page.dispatch_event(f"#node-{p.node('x')}", "click")
    assert "(151 contributions)" in p.text("#node-detail")
    p.check_clean()


def _grad(root, leaf):
    root.backward()
    return leaf.grad
