// The "name the clusters" page: one card per cluster, names and notes saved to labels.csv through POST /api/labels.
const PAGE = 12;
const $ = id => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

function tileGrid(cluster, source, ids, title) {
  const grid = el('div', {class: 'grid', id: `${source}-${cluster}`});
  const more = el('button', {type: 'button', id: `more-${source}-${cluster}`, class: 'more'});
  let shown = 0;
  const showMore = () => {
    for (const i of ids.slice(shown, shown + PAGE))
      grid.append(el('img', {src: `/tile/${source}/${i}.png`, alt: `${source} tile ${i}`, loading: 'lazy', width: 128, height: 128}));
    shown = Math.min(ids.length, shown + PAGE);
    more.textContent = `Show ${Math.min(PAGE, ids.length - shown)} more`;
    more.hidden = shown >= ids.length;
  };
  more.addEventListener('click', showMore);
  showMore();
  return el('div', {}, el('h3', {}, `${title} (${ids.length})`), grid, more);
}

function card(c) {
  const conf = c.probability === null ? 'no tiles' : `mean head confidence ${(100 * c.probability).toFixed(0)} %`;
  return el('section', {class: 'card', id: `cluster-${c.id}`},
    el('h2', {}, `Cluster ${c.id}`),
    el('p', {class: 'meta'}, `${c.tiles} tiles (${c.training_tiles} training) · ${conf}`),
    el('label', {for: `name-${c.id}`}, 'Name'),
    Object.assign(el('input', {id: `name-${c.id}`, type: 'text', maxlength: 80, autocomplete: 'off'}), {value: c.name}),
    el('span', {class: 'error', id: `error-name-${c.id}`}),
    el('label', {for: `note-${c.id}`}, 'Note'),
    Object.assign(el('textarea', {id: `note-${c.id}`, rows: 2}), {value: c.description}),
    el('span', {class: 'error', id: `error-note-${c.id}`}),
    tileGrid(c.id, 'real', c.real, 'Real members, most confident first'),
    tileGrid(c.id, 'generated', c.generated, 'Generated for this cluster'));
}

async function save() {
  const ids = [...document.querySelectorAll('section.card')].map(s => Number(s.id.split('-')[1]));
  const body = {names: ids.map(i => $(`name-${i}`).value), notes: ids.map(i => $(`note-${i}`).value)};
  document.querySelectorAll('.error').forEach(e => { e.textContent = ''; });
  document.querySelectorAll('.invalid').forEach(e => e.classList.remove('invalid'));
  const r = await fetch('/api/labels', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const data = await r.json();
  if (r.ok) { $('status').textContent = `Saved ${data.saved} at ${new Date().toLocaleTimeString()}.`; $('status').className = 'ok'; return; }
  for (const [field, message] of Object.entries(data.problems || {})) {
    $(`error-${field}`).textContent = message;
    $(field).classList.add('invalid');
  }
  $('status').textContent = data.error;
  $('status').className = 'error';
}

async function load() {
  const r = await fetch('/api/clusters');
  const data = await r.json();
  $('run').textContent = `Run ${data.run}: K = ${data.k}, ${data.n_real} real tiles, ${data.n_generated} generated.` +
    (data.labels_problem ? ` labels.csv could not be read (${data.labels_problem}); saving replaces it.` : '');
  $('clusters').append(...data.clusters.map(card));
  document.body.dataset.ready = 'true';
}

$('save').addEventListener('click', save);
load();
