#!/usr/bin/env python
"""Build the documentation site offline into _docs/ and check it (no Quarto needed).

    python tools/build_docs.py            # build and check
    python -m http.server -d _docs 8000   # then preview at http://localhost:8000

Steps: nbdev's pre-processing (`nbdev_proc_nbs` without its Quarto download) into _proc/;
pages renamed to their `output-file` (train.html, …, as Quarto names them, so nbdev's doc links
and `_modidx.py` hold) and those links made relative; `smalldocs render`; KaTeX served from a
local copy (Debian `libjs-katex`, or npm `katex` in node_modules, or $KATEX_DIR); then checks:
one page per chapter and per lab notebook (nbs/lab/, pages in lab/), a sidebar of the chapters
followed by the lab's section and nothing else, an API entry (`show_doc`) for every exported
name of `cldm_nb/_modidx.py`, every notebook image on its page with its file present, no CDN
left, and `smalldocs check` (broken internal links). Exits 1 listing the problems.
With Quarto installed, `nbdev_docs` builds the same chapters from the same `_quarto.yml`.
"""
import importlib, json, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROC, OUT = ROOT/'_proc', ROOT/'_docs'
KATEX_CDN = 'https://cdn.jsdelivr.net/npm/katex@'
KATEX_DIRS = ['/usr/share/javascript/katex', str(ROOT/'node_modules/katex/dist')]
LAB = 'lab'                     # the lab notebooks' folder under nbs/, and their pages' folder on the site

def notebooks() -> list[str]:
    "The book's notebooks, relative to nbs/: the chapters, then the lab notebooks (private `_*.ipynb` left out)."
    nbs = ROOT/'nbs'
    return [str(p.relative_to(nbs)) for d in (nbs, nbs/LAB) for p in sorted(d.glob('*.ipynb')) if not p.name.startswith('_')]

def preprocess() -> None:
    "nbdev's docs pre-processing into _proc/ (what `nbdev_proc_nbs` does, without installing Quarto)."
    import nbdev.quarto
    nbdev.quarto._ensure_quarto = lambda: None
    nbdev.quarto._pre_docs(n_workers=0, force=True)

def front_matter(nb: dict) -> tuple[dict, str]:
    "The first cell's YAML front matter (as parsed by yaml) and its text."
    import yaml
    c = nb['cells'][0]; s = ''.join(c['source'])
    m = re.match(r'---\n(.*?)\n---', s, re.S) if c['cell_type'] == 'raw' else None
    return (yaml.safe_load(m.group(1)) or {}, s) if m else ({}, '')

def for_smalldocs(doc_url: str) -> dict[str, str]:
    "Give _proc's pages their Quarto names, make doc links relative, drop Quarto-only keys; returns old → new page names."
    import yaml
    renamed, names, pages = {}, [], []
    for p in sorted(PROC.glob('*.ipynb')) + sorted(PROC.glob(f'{LAB}/*.ipynb')):
        nb = json.loads(p.read_text()); names.append(str(p.relative_to(PROC)))
        fm, text = front_matter(nb)
        if 'output-file' in fm:
            rel = p.relative_to(PROC)                   # a page keeps its folder (lab/); Quarto's output-file names the file
            renamed[str(rel)] = str(rel.parent/Path(fm.pop('output-file')).with_suffix('.ipynb').name)
            nb['cells'][0]['source'] = '---\n' + yaml.safe_dump(fm, allow_unicode=True, sort_keys=False) + '---\n'
        pages.append(nb)
    for old, nb in zip(names, pages):
        up = '../' * (len(Path(old).parts) - 1)        # from a lab page, the chapters' pages are one folder up
        for c in nb['cells']:            # nbdev links names to the published site; the offline site links to itself
            c['source'] = ''.join(c['source']).replace(doc_url, up)
            for a, b in renamed.items(): c['source'] = c['source'].replace(f']({up}{a}', f']({up}{b}')
            for o in c.get('outputs', []):
                for k, v in o.get('data', {}).items():
                    if k.startswith('text/'): o['data'][k] = (''.join(v) if isinstance(v, list) else v).replace(doc_url, up)
        (PROC/old).unlink(); (PROC/renamed.get(old, old)).write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    side = PROC/'sidebar.yml'
    s = side.read_text()
    for old, new in renamed.items(): s = s.replace(f'- {old}\n', f'- {new}\n')
    side.write_text(s)
    q = yaml.safe_load((PROC/'_quarto.yml').read_text())
    q['format'] = {'html': {k: v for k, v in q['format']['html'].items() if k != 'keep-md'}}     # html only
    (PROC/'_quarto.yml').write_text(yaml.safe_dump(q, sort_keys=False))
    return renamed

def katex_source() -> Path:
    "A local KaTeX distribution (katex.min.js, katex.min.css, fonts/, contrib/auto-render)."
    import os
    for d in [os.environ.get('KATEX_DIR')] + KATEX_DIRS:
        if d and (Path(d)/'katex.min.css').is_file(): return Path(d)
    sys.exit("KaTeX not found: install it with `apt-get install libjs-katex` (Debian/Ubuntu) or `npm install katex`, "
             "or set KATEX_DIR to a folder holding katex.min.js, katex.min.css and fonts/.")

def localise_katex(site: Path) -> int:
    "Copy KaTeX into site_libs/katex and point the pages there instead of the CDN; returns pages changed."
    src, dst = katex_source(), site/'site_libs'/'katex'
    (dst/'contrib').mkdir(parents=True, exist_ok=True)
    for f in ('katex.min.js', 'katex.min.css'): shutil.copy(src/f, dst/f)            # follows Debian's symlinks
    auto = src/'contrib'/'auto-render.min.js'
    shutil.copy(auto if auto.exists() else src/'contrib'/'auto-render.js', dst/'contrib'/'auto-render.min.js')
    shutil.copytree(src/'fonts', dst/'fonts', dirs_exist_ok=True)
    n = 0
    for page in site.rglob('*.html'):
        h = page.read_text()
        new = re.sub(re.escape(KATEX_CDN) + r'[^/"]+/dist', '/'.join(['..'] * (len(page.relative_to(site).parts) - 1) + ['site_libs/katex']), h)
        if new != h: page.write_text(new); n += 1
    return n

def check(site: Path, renamed: dict[str, str]) -> list[str]:
    "Problems with the built site."
    import cldm_nb._modidx as modidx
    problems = []
    pages = {c: site/Path(renamed.get(c, c)).with_suffix('.html') for c in notebooks()}
    for c, page in pages.items():
        if not page.is_file(): problems.append(f"{c}: no page {page.relative_to(site)}")
    index = (site/'index.html').read_text() if (site/'index.html').is_file() else ''
    side = re.search(r'<nav[^>]*sidebar.*?</nav>', index, re.S)
    side_links = re.findall(r'href="([^"#]+)"', side.group(0)) if side else []
    expected = sorted(str(p.relative_to(site)) for p in pages.values())
    if sorted(set(side_links)) != expected:
        problems.append(f"sidebar: links {sorted(set(side_links))}, expected the chapters and the lab {expected}")
    lab_pages = sorted(l for l in expected if l.startswith(f'{LAB}/'))
    if side and lab_pages:              # the lab: one section, after every chapter, holding the lab's pages and nothing else
        sec = re.search(r'<li class="sidebar-item sidebar-item-section">\s*<div[^>]*>\s*<a[^>]*>\s*<span class="menu-text">\s*'
                        + LAB + r'\s*</span>.*?<ul[^>]*>(.*?)</ul>', side.group(0), re.S | re.I)
        inside = re.findall(r'href="([^"#]+)"', sec.group(1)) if sec else []
        before = re.findall(r'href="([^"#]+)"', side.group(0)[:sec.start()]) if sec else []
        if sorted(inside) != lab_pages or any(l.startswith(f'{LAB}/') for l in before) or len(before) + len(inside) != len(side_links):
            problems.append(f"sidebar: expected the chapters, then a section '{LAB}' of {lab_pages} only; got {side_links}")
    for mod, syms in modidx.d['syms'].items():
        public = set(getattr(importlib.import_module(mod), '__all__', []))
        for name, (url, _) in syms.items():
            if name.split('.', 2)[-1] not in public: continue           # methods and private helpers: no entry of their own
            page, anchor = url.split('#')
            if not (site/page).is_file(): problems.append(f"{name}: its page {page} is missing"); continue
            if f'id="{anchor}"' not in (site/page).read_text(): problems.append(f"{name}: no API entry #{anchor} on {page}")
    for c, page in pages.items():
        if not page.is_file(): continue
        nb = json.loads((ROOT/'nbs'/c).read_text())
        n_img = sum('image/png' in o.get('data', {}) for cell in nb['cells'] for o in cell.get('outputs', []))
        h = page.read_text()
        srcs = re.findall(r'<img[^>]*src="([^"]+)"', h)
        if len([s for s in srcs if not s.startswith(('http:', 'https:'))]) < n_img:
            problems.append(f"{page.relative_to(site)}: {len(srcs)} images, but {c} has {n_img} image outputs")
        for s in srcs:
            if not s.startswith(('data:', 'http:', 'https:')) and not (page.parent/s.split('#')[0]).is_file():
                problems.append(f"{page.relative_to(site)}: image {s} is missing")
        if 'cdn.jsdelivr.net/npm/katex' in h: problems.append(f"{page.relative_to(site)}: KaTeX still loaded from the CDN")
    r = subprocess.run(['smalldocs', 'check', str(PROC)], capture_output=True, text=True)
    if r.returncode: problems.append('smalldocs check:\n' + (r.stdout + r.stderr).strip())
    return problems

def main():
    from nbdev.config import get_config
    t0 = time.time()
    cfg = get_config()
    preprocess()
    renamed = for_smalldocs(f"{cfg.doc_host}{cfg.doc_baseurl}/")
    subprocess.run(['smalldocs', 'render', '--quiet', str(PROC)], check=True)
    shutil.rmtree(OUT, ignore_errors=True)
    shutil.move(PROC/'_docs', OUT)
    n = localise_katex(OUT)
    problems = check(OUT, renamed)
    print(f"site: {len(list(OUT.rglob('*.html')))} pages in {OUT.relative_to(ROOT)}/ ({len(list(OUT.glob(f'{LAB}/*.html')))} in {LAB}/), KaTeX local on {n} pages, built in {time.time() - t0:.0f} s")
    print('\n'.join(problems) or 'site checks passed')
    sys.exit(1 if problems else 0)

if __name__ == '__main__': main()
