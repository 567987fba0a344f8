"""`cldm review` in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium.

    python tools/review_browser.py                         # on a fresh smoke run (seconds)
    python tools/review_browser.py RUN --screenshots DIR   # on a copy of RUN; the chapter's screenshots into DIR

On a copy of the run (it writes names and answers), with `cldm review` in its own process: names two clusters (a
clash first, shown beside the field, then saved with Enter; one name holding `|`, `<script>` and `=cmd`) and checks
`labels.csv`; reads a blind session of 20 tiles with known answers, by keys and by buttons, confidence before and
after the call, with Ctrl+R and Ctrl+S (no answer), a held key (one answer), a taken-back answer, a 360-pixel-wide
window, a 200-character name (refused with a message), a page reload and a SIGKILL of the server along the way,
and checks the answers file, the accuracy and interval the page shows, and the report's section (the names inert);
sends requests that must be refused (4xx, nothing written), a foreign Host and Origin among them; and checks the
run lock (a second review is served, `cldm run` is refused).
Ends with 'review browser test: N checks passed' or the first failure.
"""
import argparse, contextlib, csv, io, json, re, shutil, signal, subprocess, tempfile, time, urllib.error, urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from cldm_nb.config import RunConfig
from cldm_nb.data import load_tiles, sample_data
from cldm_nb.gallery import load_labels
from cldm_nb.study import binomial_interval, percent, read_answers, read_session

CHROMIUM, CHROMEDRIVER = shutil.which('chromium') or '/usr/bin/chromium', shutil.which('chromedriver') or '/usr/bin/chromedriver'
READER, N = "Reader O'Brien", 20
INERT = '=cmd | <script>alert(1)</script>'               # a cluster name a spreadsheet, a Markdown table and HTML must each leave inert
passed = 0


def check(ok: bool, what: str) -> None:
    "Count a passed check, or stop with what failed."
    global passed
    if not ok: raise SystemExit(f"review browser test FAILED: {what}")
    passed += 1


def smoke_run(folder: Path) -> Path:
    "A `smoke` run on 24 sample tiles with 12 generated tiles (enough for a session of 20)."
    from cldm_nb.pipeline import run_pipeline
    np.save(folder/'tiles.npy', load_tiles(sample_data())[:24])
    with contextlib.redirect_stderr(io.StringIO()):          # its progress bars
        run_pipeline(folder/'tiles.npy', folder/'run', RunConfig.smoke(pretrained_lpips=False, eval_tiles=12), 'cpu', log=lambda *a: None)
    return folder/'run'


class ReviewServer:
    "`cldm review` on `run` in its own process, on a free loopback port: `url`, `restart` after a SIGKILL, `stop`."
    def __init__(self, run: Path): self.run = run; self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(['cldm', 'review', '--run', str(self.run), '--port', '0', '--tiles', str(N), '--seed', '7'],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while not (m := re.search(r'(http://\S+?)/ to name', line := self.proc.stdout.readline())) and line: pass
        if not m:
            self.proc.kill(); raise SystemExit(f"review browser test FAILED: cldm review did not start ({line!r})")
        self.url = m.group(1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None: self.proc.send_signal(sig)
        self.proc.wait(); self.proc.stdout.close()

    def restart(self) -> None: self.stop(signal.SIGKILL); self.start()


def request(url: str, method: str = 'GET', body=None, headers: dict | None = None) -> tuple[int, dict | bytes]:
    "Status and JSON (or bytes) of one request, 4xx included."
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data, {'Content-Type': 'application/json', **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(req) as r: status, raw, kind = r.status, r.read(), r.headers.get_content_type()
    except urllib.error.HTTPError as e: status, raw, kind = e.code, e.read(), e.headers.get_content_type()
    return status, json.loads(raw) if kind == 'application/json' else raw


def browser() -> webdriver.Chrome:
    "Headless Chromium at a laptop's window size; nothing is downloaded."
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1200,1000', '--hide-scrollbars'):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def name_clusters(d, server: ReviewServer, shots: Path | None) -> None:
    "The naming page: a clash is shown beside the field and nothing is written; two names and a note saved with Enter, one name meant to break the files."
    run = server.run
    d.get(server.url + '/')
    wait = WebDriverWait(d, 30)
    wait.until(lambda d: d.find_element(By.TAG_NAME, 'body').get_attribute('data-ready') == 'true')
    k = json.loads((run/'model.json').read_text())['k']
    check(len(d.find_elements(By.CSS_SELECTOR, 'section.card')) == k, f"one card per cluster ({k})")
    check(not d.find_elements(By.CSS_SELECTOR, 'img[src*="generated"]'), "the naming page shows no generated tile")
    big = max(range(k), key=lambda c: len(d.find_element(By.ID, f'real-{c}').find_elements(By.TAG_NAME, 'img')))
    more = d.find_element(By.ID, f'more-real-{big}')
    if more.is_displayed():
        before = len(d.find_element(By.ID, f'real-{big}').find_elements(By.TAG_NAME, 'img'))
        click(d, more)
        check(len(d.find_element(By.ID, f'real-{big}').find_elements(By.TAG_NAME, 'img')) > before, "'Show more' adds tiles")
    thumb = d.find_element(By.CSS_SELECTOR, f'#real-{big} img')
    check(thumb.size['width'] == 256, f"tiles at twice their size (256 px, got {thumb.size['width']})")
    click(d, thumb)
    check(d.find_element(By.ID, 'zoom').get_attribute('open') is not None and d.find_element(By.ID, 'zoom-img').size['width'] > 256,
          "a click shows the tile larger")
    ActionChains(d).send_keys(Keys.ESCAPE).perform()
    labels_before = (run/'labels.csv').read_text()
    for field, text in [('name-0', 'stroma'), ('name-1', 'Stroma'), ('note-0', 'collagen fibres, few nuclei')]:
        e = d.find_element(By.ID, field); e.clear(); e.send_keys(text)
    click(d, d.find_element(By.ID, 'save'))
    wait.until(lambda d: d.find_element(By.ID, 'error-name-1').text)
    check('has this name already' in d.find_element(By.ID, 'error-name-1').text, "a repeated name is shown beside its field")
    check("cluster 1's name" in d.find_element(By.ID, 'status').text, "the message names the cluster as its card does")
    check((run/'labels.csv').read_text() == labels_before, "a refused save writes nothing")
    e = d.find_element(By.ID, 'name-1'); e.clear(); e.send_keys(INERT + Keys.ENTER)          # Enter saves
    wait.until(lambda d: d.find_element(By.ID, 'status').text.startswith('Saved'))
    labels, on_disk = load_labels(run/'labels.csv', k), pd.read_csv(run/'labels.csv', dtype=str)
    check(on_disk.name[:2].tolist() == ['stroma', "'" + INERT] and labels.name[:2].tolist() == ['stroma', INERT]
          and labels.description[0] == 'collagen fibres, few nuclei',
          f"labels.csv holds the names and the note, the formula guarded on disk and read as typed: {on_disk.name[:2].tolist()}")
    with open(run/'labels.csv', newline='') as f: cells = [c for row in csv.reader(f) for c in row]
    check(not any(c.startswith(('=', '+', '-', '@')) for c in cells), "no cell of labels.csv starts a formula")
    check(d.find_element(By.ID, 'error-name-1').text == '', "the error is cleared once fixed")
    d.refresh(); WebDriverWait(d, 30).until(lambda d: d.find_element(By.TAG_NAME, 'body').get_attribute('data-ready') == 'true')
    check(d.find_element(By.ID, 'name-1').get_attribute('value') == INERT, "the page shows the name as typed")
    if shots:
        d.set_window_size(1200, 1400); d.execute_script('window.scrollTo(0, 0)'); shot(d, shots/'review_names.png')
        d.set_window_size(1200, 1000)
    d.find_element(By.ID, 'name-0').send_keys(' (draft)')
    asks = "const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented"
    check(d.execute_script(asks), "leaving with unsaved names asks first (beforeunload)")
    e = d.find_element(By.ID, 'name-0'); e.clear(); e.send_keys('stroma' + Keys.ENTER)
    WebDriverWait(d, 30).until(lambda d: d.find_element(By.ID, 'status').text.startswith('Saved'))
    check(not d.execute_script(asks), "and not once saved")


def shot(d, path: Path) -> None:
    "The window as a 256-colour PNG at `path` (a third of the size, the tiles still legible)."
    Image.open(io.BytesIO(d.get_screenshot_as_png())).convert('RGB').quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def click(d, element) -> None:
    "Click `element` once scrolled to the middle of the window (clear of the page's sticky save bar)."
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", element); element.click()


def wait_position(d, position: int) -> None:
    "Wait until the page shows the tile at `position` (or the results, past the end)."
    WebDriverWait(d, 30).until(lambda d: d.find_element(By.TAG_NAME, 'body').get_attribute('data-finished') == 'true' if position >= N else
                               d.find_element(By.ID, 'study').get_attribute('data-position') == str(position))


def keys(d, *pressed: str) -> None:
    "Press `pressed` one after another, as a person does."
    for k in pressed: ActionChains(d).send_keys(k).perform()


def answer(d, position: int, call: str, confidence: int) -> None:
    "Answer the shown tile in one of three ways by position: keys, confidence first; radio and button; keys, confidence after."
    if position % 3 == 0: keys(d, str(confidence), call[0])
    elif position % 3 == 1:
        d.find_element(By.CSS_SELECTOR, f'input[name=confidence][value="{confidence}"]').click()
        click(d, d.find_element(By.ID, call))
    else: keys(d, call[0], str(confidence))
    wait_position(d, position + 1)


def pressed(d) -> list[str]:
    "The calls the page shows as chosen for the tile on screen."
    return [b for b in ('real', 'synthetic') if d.find_element(By.ID, b).get_attribute('aria-pressed') == 'true']


def no_answer_keys(d, run: Path, position: int) -> None:
    "Ctrl+R, Ctrl+S and a shifted S answer nothing and choose nothing."
    for mod, key in [(Keys.CONTROL, 'r'), (Keys.CONTROL, 's'), (Keys.SHIFT, 's')]:
        ActionChains(d).key_down(mod).send_keys(key).key_up(mod).perform()
    time.sleep(0.5); wait_position(d, position)
    check(len(read_answers(run, READER)) == position and pressed(d) == [] and d.find_element(By.ID, 'study').get_attribute('data-position') == str(position),
          "Ctrl+R, Ctrl+S and Shift+S answer nothing")


def held_key(d, run: Path, position: int, call: str) -> None:
    "A key held down after the confidence: its first press answers, the auto-repeats that follow (`repeat`, 30 a second) do nothing."
    keys(d, '3')
    d.execute_script("""const key = arguments[0];
        let i = 0; const t = setInterval(() => { document.body.dispatchEvent(new KeyboardEvent('keydown', {key, repeat: i > 0, bubbles: true}));
                                                 if (++i === 30) { clearInterval(t); document.body.dataset.held = 'done'; } }, 33);""", call[0])
    WebDriverWait(d, 10).until(lambda d: d.find_element(By.TAG_NAME, 'body').get_attribute('data-held') == 'done')
    wait_position(d, position + 1)
    a = read_answers(run, READER)
    check(len(a) == position + 1 and a.answer.iloc[-1] == call and pressed(d) == [], f"a key held for a second answers once ({len(a) - position} answers)")


def undo_once(d, run: Path, position: int, wrong: str) -> None:
    "A wrong call at `position`, taken back with U: the tile shows again and the file holds one answer fewer."
    keys(d, wrong[0]); keys(d, Keys.ENTER)                  # no confidence: Enter saves the call alone
    wait_position(d, position + 1)
    check(len(read_answers(run, READER)) == position + 1, "Enter saves a call without a confidence")
    keys(d, 'u'); wait_position(d, position)
    check(len(read_answers(run, READER)) == position, "U takes back the last answer")
    keys(d, 'u'); time.sleep(0.3)
    check(len(read_answers(run, READER)) == position, "and only one")


def narrow(d, run: Path, position: int, call: str, confidence: int) -> None:
    "At 360 px wide nothing sticks out of the window, and the buttons answer."
    d.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', dict(width=360, height=740, deviceScaleFactor=1, mobile=False))
    try:
        width = d.execute_script('return document.documentElement.scrollWidth')
        rights = d.execute_script("return ['tile', 'real', 'synthetic', 'confidence', 'save'].map(id => document.getElementById(id).getBoundingClientRect().right)")
        check(width <= 360 and max(rights) <= 360, f"a 360-pixel-wide window holds the page (width {width}, rightmost {max(rights):.0f})")
        d.find_element(By.CSS_SELECTOR, f'input[name=confidence][value="{confidence}"]').click()
        click(d, d.find_element(By.ID, call))
        wait_position(d, position + 1)
    finally: d.execute_cdp_cmd('Emulation.clearDeviceMetricsOverride', {})


def blind_session(d, server: ReviewServer, shots: Path | None) -> None:
    "A session of 20 with known answers (every fourth wrong), with the special cases on the way, a reload after 8 and a killed server after 13."
    run = server.run
    d.get(server.url + '/read')
    e = d.find_element(By.ID, 'reader')
    for bad, message in [('../etc', 'cannot be used'), ('x' * 200, 'at most 40 characters, and this name has 200')]:
        e.clear(); e.send_keys(bad); d.find_element(By.ID, 'begin').click()
        WebDriverWait(d, 10).until(lambda d: message in d.find_element(By.ID, 'reader-error').text)
        check(e.get_attribute('value') == bad and not list(run.glob('review/*.json')), f"the reader name {bad[:12]!r}… is refused with a message, not cut")
    e.clear(); e.send_keys(READER.replace(' ', '\u00a0 ')); d.find_element(By.ID, 'begin').click()   # a no-break space and two spaces: one name
    wait_position(d, 0)
    check(d.find_element(By.ID, 'progress').text.endswith(f'reader {READER}'), "the name is kept in its normal form")
    plan = read_session(run, READER)['tiles']
    truth = ['synthetic' if t['source'] == 'generated' else 'real' for t in plan]
    calls = [t if i % 4 else {'real': 'synthetic', 'synthetic': 'real'}[t] for i, t in enumerate(truth)]
    confidence = [1 + i % 5 for i in range(N)]
    confidence[4] = 3                                                            # the held key's tile
    check(re.search(r'/api/study/[^/]+/tile/0\.bmp$', d.find_element(By.ID, 'tile').get_attribute('src')) is not None,
          "the tile's address says nothing of its source")
    tile = d.find_element(By.ID, 'tile')
    check(d.execute_script('return arguments[0].clientWidth', tile) == 256 and tile.value_of_css_property('image-rendering') == 'pixelated',
          f"the tile at twice its size, pixelated ({tile.size}, {tile.value_of_css_property('image-rendering')})")
    for i in range(N):
        if i == 2: no_answer_keys(d, run, i)
        if i == 3: undo_once(d, run, i, {'real': 'synthetic', 'synthetic': 'real'}[calls[i]])
        if i == 8:
            d.refresh(); wait_position(d, 8)
            check(d.find_element(By.ID, 'progress').text.startswith(f'Tile 9 of {N}'), "a reload continues at the next tile")
        if i == 13:
            check(len(read_answers(run, READER)) == 13, "every acknowledged answer is on disk before the next tile shows")
            server.restart()                                   # SIGKILL, then a new server on a new port
            d.get(f"{server.url}/read?reader={READER.replace(' ', '%20')}"); wait_position(d, 13)
            check(len(read_answers(run, READER)) == 13, "a killed server lost no acknowledged answer; the page continues at tile 14")
        if i == 5 and shots:
            d.find_element(By.CSS_SELECTOR, 'input[name=confidence][value="4"]').click(); shot(d, shots/'review_read.png')
            d.execute_script("document.querySelectorAll('input[name=confidence]').forEach(r => { r.checked = false; })")
        if i == 4: held_key(d, run, i, calls[i])
        elif i == 10: narrow(d, run, i, calls[i], confidence[i])
        else: answer(d, i, calls[i], confidence[i])
    a = read_answers(run, READER)
    check(a.answer.tolist() == calls and a.confidence.astype(int).tolist() == confidence and a.position.tolist() == list(range(N)),
          "review/<reader>.csv holds each answer once, in order, with its confidence")
    lo, hi = binomial_interval(15, N)
    summary = d.find_element(By.ID, 'summary').text
    check(summary.startswith(f"15 of {N} correct: 75 % (95 % interval {percent(lo)} to {percent(hi)})"), f"the page shows accuracy and interval: {summary!r}")
    check(any(td.text == INERT for td in d.find_elements(By.CSS_SELECTOR, '#by-cluster td')), "the page shows the cluster name as typed, as text")
    check(d.find_element(By.ID, 'verdict').text.startswith('The interval lies above 50 %'), "the page says what the interval lets one conclude")
    check(len(d.find_elements(By.CSS_SELECTOR, '#by-cluster tbody tr')) == a.cluster.nunique(), "one row per cluster read")
    check('ROC AUC' in d.find_element(By.ID, 'auc').text, "the ROC AUC is shown")
    check(not d.find_element(By.ID, 'undo').is_displayed(), "the results are final: nothing can be taken back once they show")
    report = (run/'report.md').read_text()
    check('## Reader study' in report and f'| {READER} |' in report and '75 %' in report and f'{percent(lo)} to {percent(hi)}' in report,
          "report.md has the reader study, rounded as the page")
    check('Over all readers, the interval lies above 50 %' in report, "and says what the interval lets one conclude")
    row = next((line for line in report.splitlines() if '&lt;script&gt;' in line), '')
    check("| =cmd \\| &lt;script&gt;alert(1)&lt;/script&gt; |" in row and '<script' not in report and len(re.findall(r'(?<!\\)\|', row)) == 7,
          f"the name with |, <script> and = is inert in report.md: {row!r}")
    def no_constant(name): raise ValueError(f"metrics.json holds {name}")
    check(json.loads((run/'metrics.json').read_text(), parse_constant=no_constant)['reader_study']['readers'][0]['accuracy'] == 0.75,
          "metrics.json has the reader study, strict JSON")
    if shots: shot(d, shots/'review_results.png')


def bad_requests(server: ReviewServer) -> None:
    "Requests outside what the pages send: a 4xx with a message each, and no file written or changed."
    url, run = server.url, server.run
    before = sorted(p.name for p in (run/'review').iterdir()), (run/'labels.csv').read_text(), sorted(p.name for p in run.parent.iterdir())
    reader = urllib.request.quote(READER)
    for method, path, body, status in [
            ('GET', '/tile/real/100000.png', None, 404), ('GET', '/tile/model/0.png', None, 404), ('GET', '/static/../config.json', None, 404),
            ('GET', '/static/%2e%2e/config.json', None, 404), ('GET', '/%2e%2e/model.json', None, 404),
            ('POST', '/api/study', {'reader': '../../tmp/x'}, 400), ('POST', '/api/study', {'reader': 'a/b'}, 400),
            ('POST', '/api/study', 'not json', 400), ('POST', '/api/study', {}, 400),
            ('GET', '/api/study/nobody', None, 404), ('GET', '/api/study/..%2f..%2fetc/tile/0.png', None, 404),
            ('GET', f'/api/study/{reader}/tile/{N}.bmp', None, 404), ('GET', '/tile/generated/0.png', None, 404),
            ('POST', '/api/study', {'reader': 'x' * 200}, 400), ('POST', '/api/study', '[' * 30_000, 400),
            ('POST', f'/api/study/{reader}/answer', {'position': N - 1, 'answer': 'real', 'confidence': 3.0}, 400),
            ('POST', f'/api/study/{reader}/answer', {'position': N, 'answer': 'real'}, 409),
            ('POST', f'/api/study/{reader}/answer', {'position': 0, 'answer': 'maybe'}, 400),
            ('POST', '/api/study/nobody/answer', {'position': 0, 'answer': 'real'}, 404),
            ('POST', '/api/labels', {'names': ['x'], 'notes': ['']}, 400)]:
        got, body_ = request(url + path, method, body)
        check(got == status and isinstance(body_, dict) and body_.get('error'), f"{method} {path}: {status} with a message (got {got}: {str(body_)[:120]})")
    port = url.rsplit(':', 1)[1]
    for headers in [{'Host': f'attacker.example:{port}'}, {'Host': f'127.0.0.1:{int(port) + 1}'}, {'Origin': 'http://attacker.example'}]:
        for method, path, body in [('GET', '/api/clusters', None), ('POST', '/api/labels', {'names': ['a'] * 9, 'notes': [''] * 9})]:
            got, body_ = request(url + path, method, body, headers)
            check(got == 400 and 'the address it was started on' in body_.get('error', ''), f"{method} {path} with {headers}: refused (got {got})")
    check(request(url + '/api/clusters', headers={'Host': f'localhost:{port}'})[0] == 200, "localhost for 127.0.0.1 is served")
    after = sorted(p.name for p in (run/'review').iterdir()), (run/'labels.csv').read_text(), sorted(p.name for p in run.parent.iterdir())
    check(after == before, "the refused requests wrote nothing")


def lock(run: Path) -> None:
    "While a review serves the run: a second review is served, `cldm run` on the folder is refused."
    second = ReviewServer(run)
    check(request(second.url + '/api/clusters')[0] == 200, "a second cldm review on the same run is served")
    second.stop()
    r = subprocess.run(['cldm', 'run', '--out', str(run), '--preset', 'smoke'], capture_output=True, text=True)
    check(r.returncode != 0 and 'in use by' in r.stderr, f"cldm run is refused while a review serves the run ({r.stderr[-200:]!r})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('run', nargs='?', help="a finished `cldm run` folder (default: a fresh smoke run)")
    ap.add_argument('--screenshots', help="save the pages' screenshots (review_names.png, review_read.png, review_results.png) here")
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.run: run = Path(shutil.copytree(args.run, tmp/Path(args.run).name, ignore=shutil.ignore_patterns('review', 'tb')))
        else: run = smoke_run(tmp)
        if (run/'labels.csv').exists(): (run/'labels.csv').unlink()
        from cldm_nb.gallery import write_label_template
        write_label_template(run/'labels.csv', json.loads((run/'model.json').read_text())['k'])
        shots = Path(args.screenshots) if args.screenshots else None
        if shots: shots.mkdir(parents=True, exist_ok=True)
        server, d = ReviewServer(run), browser()
        try:
            name_clusters(d, server, shots)
            blind_session(d, server, shots)
            bad_requests(server)
            lock(run)
        finally:
            d.quit(); server.stop()
    print(f"review browser test: {passed} checks passed in {time.time() - t0:.0f} s")


if __name__ == '__main__': main()
