#!/usr/bin/env python3
"""Drives headless Chromium through the DevTools protocol on a pipe (--remote-debugging-pipe), so
a test can click and type like a reader: real mouse and keyboard input events, no scripted submits.

Usage: browser.py STEPS_JSON, where the steps are a list of
  {"device": {"width": w, "height": h, "scale": s}}
  {"dark": true}                  the reader's system prefers a dark colour scheme (false: light)
  {"style": [css, property]}      the computed style of the first element css selects, added to the output
                                  emulate a phone: that viewport in CSS pixels, that pixel ratio
                                  (default 1), mobile on (the page's viewport meta tag applies)
  {"visit": url}                  open a page and wait for it to load
  {"click": css, "navigates": b}  scroll the element into view, click its centre (and wait for the
                                  next page)
  {"type": text}                  type into the focused element
  {"select": css, "value": v}     choose the option of value v in the <select> css selects with the
                                  keyboard, as a reader does: focus it, then the arrow keys
  {"desktop": {"width": w, "height": h}}
                                  a desktop screen: that viewport in CSS pixels, not mobile
  {"screenshot": path, "full_page": b}
                                  save a PNG of the viewport (or of the whole page)
  {"text": true}                  the page's visible text, added to the output
  {"overflow": true}              what passes the right edge of the viewport, added to the output:
                                  {"width", "scroll_width", "viewport_meta", "offenders"}, the
                                  offenders being the elements that pass it while their parent
                                  does not, as "tag.class#id (right edge)"
  {"axe": path}                   runs axe-core (the axe.min.js at path) for WCAG 2.0/2.1 A and AA,
                                  adds its violations to the output: [{"id", "impact", "help",
                                  "nodes", "targets", "html", "why"}]: how many elements, the
                                  selectors and markup of the first 5, what is wrong with the first
Prints a JSON list: the outputs of the "text", "overflow" and "axe" steps, in order."""
import base64, json, os, select, subprocess, sys, tempfile, time

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class Browser:
    def __init__(self):
        self.profile = tempfile.TemporaryDirectory()
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():  # Chromium reads commands on fd 3 and writes replies on fd 4.
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)  # first out of the way of 3 and 4
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=800,600",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}", "about:blank"],
            preexec_fn=fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf, self.next_id, self.events, self.session = b"", 0, [], None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def read(self, timeout=20):
        deadline = time.time() + timeout
        while b"\0" not in self.buf:
            ready, _, _ = select.select([self.from_chrome], [], [], max(0, deadline - time.time()))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self.from_chrome, 65536)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, timeout=20):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read(timeout)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_load(self, timeout=20):
        deadline = time.time() + timeout
        while True:
            if any(e.get("method") == "Page.loadEventFired" for e in self.events):
                self.events.clear()
                return
            if time.time() > deadline:
                raise TimeoutError("the page did not load")
            self.events.append(self.read())

    def eval(self, expr):
        reply = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expr[:200]}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def eval_async(self, expr, timeout=60):
        reply = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}, timeout)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expr[:200]}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def click(self, css):
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(css)}); if (!e) return null;"
                        " e.scrollIntoView({block: 'center', behavior: 'instant'});"
                        " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        if box is None:
            raise RuntimeError(f"nothing on the page matches {css}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def select(self, css, value):
        where = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(css)}); if (!e) return null;"
                          " e.scrollIntoView({block: 'center', behavior: 'instant'}); e.focus();"
                          f" return [e.selectedIndex, [...e.options].findIndex(o => o.value === {json.dumps(value)})]; }})()")
        if where is None:
            raise RuntimeError(f"nothing on the page matches {css}")
        now, wanted = where
        if wanted < 0:
            raise RuntimeError(f"{css} has no option of value {value!r}")
        key, code = ("ArrowDown", 40) if wanted > now else ("ArrowUp", 38)
        for _ in range(abs(wanted - now)):
            for kind in ("rawKeyDown", "keyUp"):
                self.call("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                     "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code})
        got = self.eval(f"document.querySelector({json.dumps(css)}).value")
        if got != value:
            raise RuntimeError(f"the arrow keys left {css} at {got!r}, not {value!r}")

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        self.proc.wait(timeout=10)


# The elements that pass the right edge of a `width` wide viewport while their parent does not: where
# a horizontal scroll starts. Content inside a scrolling box (overflow-x other than visible) is that
# box's business, not the page's.
OVERFLOW = """(width => {
  const name = e => e.tagName.toLowerCase() + [...e.classList].map(c => '.' + c).join('') + (e.id ? '#' + e.id : '');
  const passes = e => e.getBoundingClientRect().right > width + 0.5;
  const scrolls = e => { for (let a = e.parentElement; a; a = a.parentElement) {
    if (a !== document.body && a !== document.documentElement && getComputedStyle(a).overflowX !== 'visible') return true; } return false; };
  const offenders = [...document.querySelectorAll('*')]
    .filter(e => passes(e) && !(e.parentElement && passes(e.parentElement)) && !scrolls(e))
    .map(e => name(e) + ' (' + Math.round(e.getBoundingClientRect().right) + ')');
  const meta = document.querySelector('meta[name=viewport]');
  return { width, scroll_width: document.documentElement.scrollWidth, viewport_meta: meta && meta.content,
           offenders: offenders.slice(0, 20) };
})"""

AXE_RUN = """axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
  .then(r => r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
                                      targets: v.nodes.slice(0, 5).map(n => n.target.join(' ')),
                                      html: v.nodes.slice(0, 5).map(n => n.html.slice(0, 200)),
                                      why: v.nodes[0].failureSummary })))"""


def main():
    steps, out = json.loads(sys.argv[1]), []
    b = Browser()
    width = None
    try:
        for step in steps:
            if "device" in step:
                d = step["device"]
                width = d["width"]
                b.call("Emulation.setDeviceMetricsOverride", {"width": d["width"], "height": d["height"],
                       "deviceScaleFactor": d.get("scale", 1), "mobile": True})
                b.call("Emulation.setTouchEmulationEnabled", {"enabled": True})
                b.call("Emulation.setScrollbarsHidden", {"hidden": True})  # a phone's overlay scrollbars
            elif "desktop" in step:
                d = step["desktop"]
                width = d["width"]
                b.call("Emulation.setDeviceMetricsOverride", {"width": d["width"], "height": d["height"],
                       "deviceScaleFactor": 1, "mobile": False})
            elif "dark" in step:
                b.call("Emulation.setEmulatedMedia", {"features": [
                    {"name": "prefers-color-scheme", "value": "dark" if step["dark"] else "light"}]})
            elif "style" in step:
                css, prop = step["style"]
                out.append(b.eval(f"getComputedStyle(document.querySelector({json.dumps(css)}))[{json.dumps(prop)}]"))
            elif "visit" in step:
                b.events.clear()
                b.call("Page.navigate", {"url": step["visit"]})
                b.wait_load()
            elif "click" in step:
                b.events.clear()
                b.click(step["click"])
                if step.get("navigates"):
                    b.wait_load()
            elif "select" in step:
                b.select(step["select"], step["value"])
            elif "type" in step:
                b.call("Input.insertText", {"text": step["type"]})
            elif "screenshot" in step:
                params = {"format": "png"}
                if step.get("full_page"):
                    size = b.call("Page.getLayoutMetrics")["cssContentSize"]
                    params.update(captureBeyondViewport=True,
                                  clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
                with open(step["screenshot"], "wb") as f:
                    f.write(base64.b64decode(b.call("Page.captureScreenshot", params, 60)["data"]))
            elif "text" in step:
                out.append(b.eval("document.body.innerText"))
            elif "overflow" in step:
                out.append(b.eval(f"{OVERFLOW}({width or 'window.innerWidth'})"))
            elif "axe" in step:
                with open(step["axe"], encoding="utf-8") as f:
                    b.eval(f.read() + "\n;true")
                out.append(b.eval_async(AXE_RUN))
    finally:
        b.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
