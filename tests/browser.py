#!/usr/bin/env python3
"""Drives headless Chromium through the DevTools protocol on a pipe (--remote-debugging-pipe), so
a test can click and type like a reader: real mouse and keyboard input events, no scripted submits.

Usage: browser.py STEPS_JSON, where the steps are a list of
  {"visit": url}                  open a page and wait for it to load
  {"click": css, "navigates": b}  click the element's centre (and wait for the next page)
  {"type": text}                  type into the focused element
  {"screenshot": path}            save a PNG of the viewport
  {"text": true}                  the page's visible text, added to the output
Prints a JSON list: the outputs of the "text" steps."""
import base64, json, os, subprocess, sys, tempfile, time

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
            if time.time() > deadline:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self.from_chrome, 65536)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read()
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
            raise RuntimeError(f"{expr}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def click(self, css):
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(css)}); if (!e) return null;"
                        " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        if box is None:
            raise RuntimeError(f"nothing on the page matches {css}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        self.proc.wait(timeout=10)


def main():
    steps, out = json.loads(sys.argv[1]), []
    b = Browser()
    try:
        for step in steps:
            if "visit" in step:
                b.events.clear()
                b.call("Page.navigate", {"url": step["visit"]})
                b.wait_load()
            elif "click" in step:
                b.events.clear()
                b.click(step["click"])
                if step.get("navigates"):
                    b.wait_load()
            elif "type" in step:
                b.call("Input.insertText", {"text": step["type"]})
            elif "screenshot" in step:
                with open(step["screenshot"], "wb") as f:
                    f.write(base64.b64decode(b.call("Page.captureScreenshot", {"format": "png"})["data"]))
            elif "text" in step:
                out.append(b.eval("document.body.innerText"))
    finally:
        b.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
