"""The report site in a real browser: headless Chromium (Debian's package) driven by Playwright's Python API.

    python -m tests.browser reports/site [--screenshots reports/screenshots]

Opens every page from disk with every network request blocked and recorded, and checks that
- no page asks for anything that is not a file of the site (a request that would leave the machine fails the check),
- every chart is drawn: each inline SVG chart holds marks (paths, rects, symbols),
- no Japanese character falls back to the missing-glyph box: each character is drawn on a canvas in the font of
  the element that shows it and compared with characters that no font has (which all draw as that box),
- nothing is cut off: no table, chart or block reaches past the page's column without a container that scrolls
  it sideways, and none is clipped (at 1280 px wide);
- every page has the sidebar listing every page, and on the first page its search finds a page by its title,
  finds nothing for a word on no page (and says so) and lists every page again when cleared;
- the first page has its banner and Table 1;
and saves screenshots of the first page (the top as a reader sees it, and the whole page). Prints one JSON
summary; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

#: where Debian puts its chromium (`apt-get install chromium`); Playwright's own browser download is not used
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

_CHARTS = """() => Array.from(document.querySelectorAll('.jp-RenderedSVG svg')).map(s => ({
    marks: s.querySelectorAll('path, rect, line, circle, symbol, text').length,
    width: s.getBoundingClientRect().width}))"""

_GLYPHS = r"""() => {
  const cjk = /[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]/u;
  const byFont = new Map();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    if (!cjk.test(node.textContent) || !node.parentElement) continue;
    const cs = getComputedStyle(node.parentElement);
    const font = `${cs.fontStyle} ${cs.fontWeight} 32px ${cs.fontFamily}`;
    if (!byFont.has(font)) byFont.set(font, new Set());
    for (const ch of node.textContent) if (cjk.test(ch)) byFont.get(font).add(ch);
  }
  const canvas = document.createElement('canvas');
  canvas.width = 48; canvas.height = 48;
  const g = canvas.getContext('2d', {willReadFrequently: true});
  const draw = (font, ch) => {
    g.clearRect(0, 0, 48, 48); g.font = font; g.textBaseline = 'top'; g.fillStyle = '#000';
    g.fillText(ch, 4, 4);
    return g.getImageData(0, 0, 48, 48).data.join(',');
  };
  const missing = [], fonts = [];
  let checked = 0, selfcheck = true;
  for (const [font, chars] of byFont) {
    // code points no font draws: whatever they look like in this font is the missing-glyph box
    const boxes = new Set(['\u{10FFFD}', '\u{E0FFF}', '\u{DFFFE}'].map(c => draw(font, c)));
    selfcheck = selfcheck && boxes.has(draw(font, '\u{10FFFC}'));
    fonts.push(font);
    for (const ch of chars) {
      checked++;
      if (boxes.has(draw(font, ch))) missing.push(ch);
    }
  }
  return {checked, missing: [...new Set(missing)], fonts, selfcheck};
}"""


#: elements wider than the column they sit in with no way to see the rest: ones that reach past the page's column
#: (the body) without a horizontally scrolling container around them, and ones clipped by overflow: hidden
_CUT_OFF = """() => {
  const out = [];
  const right = document.body.getBoundingClientRect().right;
  for (const el of document.querySelectorAll('table, pre, svg, img, .jp-OutputArea-output > *')) {
    const r = el.getBoundingClientRect();
    if (!r.width) continue;
    let a = el.parentElement, scroller = null;
    while (a && a !== document.body) {
      const o = getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip') { scroller = a; break; }
      a = a.parentElement;
    }
    const name = el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined && el.className
      ? '.' + String(el.className).split(' ')[0] : '');
    if (!scroller && r.right > right + 1) out.push(`${name}: ${Math.round(r.width)} px, past the column by ${Math.round(r.right - right)} px`);
    else if (scroller && ['hidden', 'clip'].includes(getComputedStyle(scroller).overflowX)
             && scroller.scrollWidth > scroller.clientWidth + 1) out.push(`${name}: clipped (${Math.round(scroller.scrollWidth)} px in ${scroller.clientWidth})`);
  }
  return [...new Set(out)];
}"""


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no Chromium found (install Debian's package: apt-get install -y chromium "
                            "fonts-noto-cjk)")


def only_fonts(folders: list[str | Path], where: str | Path) -> dict[str, str]:
    """Environment for a browser that sees only the fonts in `folders` (a fontconfig file written under `where`):
    how the test shows that the glyph check finds missing glyphs."""
    conf = Path(where) / "fonts.conf"
    dirs = "".join(f"<dir>{Path(f).resolve()}</dir>" for f in folders)
    conf.write_text(f'<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>{dirs}'
                    f"<cachedir>{Path(where).resolve() / 'fc-cache'}</cachedir></fontconfig>")
    return {"FONTCONFIG_FILE": str(conf)}


def _search_works(page) -> bool:
    """The sidebar's search, typed into: the last page's own title finds it; a word on no page finds nothing and
    says so; cleared, every page is listed again."""
    items = page.locator("#echolib-pages > li")
    n, last = items.count(), items.last.locator("a").inner_text()
    box = page.locator("#echolib-search")
    box.fill(last.lower())
    found = items.last.is_visible() and 1 <= sum(items.nth(i).is_visible() for i in range(n)) < n + 1
    box.fill("zzqx-no-such-word")
    none = sum(items.nth(i).is_visible() for i in range(n)) == 0 and page.locator("#echolib-none").is_visible()
    box.fill("")
    return found and none and sum(items.nth(i).is_visible() for i in range(n)) == n


def check_site(site: str | Path, screenshots: str | Path | None = None, env: dict | None = None) -> dict:
    """Open every page of the site (index.html first) offline; returns what was found per page and overall.
    `env`: the browser's environment on top of ours (e.g. only_fonts)."""
    import os

    from playwright.sync_api import sync_playwright

    site = Path(site).resolve()
    pages = [site / "index.html", *sorted((site / "stages").glob("*.html"))]
    if not pages[0].is_file():
        raise FileNotFoundError(f"{pages[0]}: no first page (run the report stage)")
    result = {"site": str(site), "pages": {}, "blocked_requests": [], "ok": True}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox"],
                                    env={**os.environ, **(env or {})})
        context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)

        def route(r):
            url = r.request.url
            if url.startswith(("file://", "data:", "about:")):
                r.continue_()
            else:
                result["blocked_requests"].append(url)
                r.abort()

        context.route("**/*", route)
        for path in pages:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load")
            page.evaluate("document.fonts.ready")
            charts = page.evaluate(_CHARTS)
            glyphs = page.evaluate(_GLYPHS)
            cut_off = page.evaluate(_CUT_OFF)
            nav = page.locator("#echolib-pages > li")
            rel = path.relative_to(site).as_posix()
            info = {"charts": len(charts), "charts_without_marks": sum(c["marks"] == 0 for c in charts),
                    "cjk_characters_checked": glyphs["checked"], "missing_glyphs": "".join(glyphs["missing"]),
                    "glyph_selfcheck": glyphs["selfcheck"], "script_errors": errors, "cut_off": cut_off,
                    "sidebar_pages": nav.count()}
            if path == pages[0]:
                info["search"] = _search_works(page)
                info["banner"] = page.locator(".echolib-banner").count() == 1
                info["smoke_warning"] = page.locator(".echolib-smoke").count() == 1
                info["title"] = page.title()
                info["text_has_table1"] = "Table 1" in page.inner_text("body")
                if screenshots:
                    out = Path(screenshots)
                    out.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(out / "index-top.png"))
                    page.screenshot(path=str(out / "index-full.png"), full_page=True)
                    info["screenshots"] = [str(out / "index-top.png"), str(out / "index-full.png")]
            bad = (info["charts_without_marks"] or info["missing_glyphs"] or not info["glyph_selfcheck"] or errors
                   or cut_off or info["sidebar_pages"] != len(pages) or not info.get("search", True)
                   or (path == pages[0] and not (info["banner"] and info["text_has_table1"])))
            info["ok"] = not bad
            result["ok"] = result["ok"] and not bad
            result["pages"][rel] = info
            page.close()
        browser.close()
    result["ok"] = result["ok"] and not result["blocked_requests"]
    result["charts"] = sum(v["charts"] for v in result["pages"].values())
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.browser", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("site", nargs="?", default="reports/site")
    ap.add_argument("--screenshots", default="reports/screenshots")
    ap.add_argument("--out", default="reports/browser_check.json")
    a = ap.parse_args(argv)
    res = check_site(a.site, a.screenshots)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2, ensure_ascii=False))
    print(json.dumps({k: res[k] for k in ("ok", "charts", "blocked_requests")} |
                     {"pages": len(res["pages"]), "failing": [k for k, v in res["pages"].items() if not v["ok"]]},
                     ensure_ascii=False))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
