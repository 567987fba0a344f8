// The "name the clusters" page: one card per cluster, names and notes saved to labels.csv through POST /api/labels.
const PAGE = 12;
const $ = id => document.getElementById(id);
let unsaved = false;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

function zoom(src) {
  $('zoom-img').src = src;
  $('zoom').showModal();
}

function tileGrid(cluster, ids, title) {
  const grid = el('div', {class: 'grid', id: `real-${cluster}`});
  const more = el('button', {type: 'button', id: `more-real-${cluster}`, class: 'more'});
  let shown = 0;
  const showMore = () => {
    for (const i of ids.slice(shown, shown + PAGE)) {
      const img = el('img', {src: `/tile/real/${i}.png`, alt: `real tile ${i}`, title: 'Click to see it larger', class: 'zoomable',
                             loading: 'lazy', width: 256, height: 256});
      img.addEventListener('click', () => zoom(img.src));
      grid.append(img);
    }
    shown = Math.min(ids.length, shown + PAGE);
    more.textContent = `Show ${Math.min(PAGE, ids.length - shown)} more`;
    more.hidden = shown >= ids.length;
  };
  more.addEventListener('click', showMore);
  showMore();
  return el('div', {}, el('h3', {}, `${title} (${ids.length})`), grid, more);
}

function card(c) {
  const conf = c.probability === null ? 'no tiles' : `mean head confidence ${c.probability_text}`;
  return el('section', {class: 'card', id: `cluster-${c.id}`},
    el('h2', {}, `Cluster ${c.id}`),
    el('p', {class: 'meta'}, `${c.tiles} tiles (${c.training_tiles} training; ${c.study_tiles} kept for the blind reading) · ${conf}`),
    el('label', {for: `name-${c.id}`}, 'Name'),
    Object.assign(el('input', {id: `name-${c.id}`, type: 'text', autocomplete: 'off', enterkeyhint: 'done'}), {value: c.name}),
    el('span', {class: 'error', id: `error-name-${c.id}`}),
    el('label', {for: `note-${c.id}`}, 'Note'),
    Object.assign(el('textarea', {id: `note-${c.id}`, rows: 2}), {value: c.description}),
    el('span', {class: 'error', id: `error-note-${c.id}`}),
    tileGrid(c.id, c.real, 'Real members shown here, most confident first'));
}

async function save() {
  const ids = [...document.querySelectorAll('section.card')].map(s => Number(s.id.split('-')[1]));
  const body = {names: ids.map(i => $(`name-${i}`).value), notes: ids.map(i => $(`note-${i}`).value)};
  document.querySelectorAll('.error').forEach(e => { e.textContent = ''; });
  document.querySelectorAll('.invalid').forEach(e => e.classList.remove('invalid'));
  let r, data;
  try {
    r = await fetch('/api/labels', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
    data = await r.json().catch(() => ({error: `The server answered ${r.status} ${r.statusText}.`}));
  } catch (e) {
    $('status').textContent = `Not saved: could not reach the server (${e.message}); is cldm review still running?`;
    $('status').className = 'error';
    return;
  }
  if (r.ok) {
    unsaved = false;
    $('status').textContent = `Saved ${data.saved} at ${new Date().toLocaleTimeString()}.`; $('status').className = 'ok';
    return;
  }
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
  $('run').textContent = `Run ${data.run}: K = ${data.k}, ${data.n_real} real tiles, ${data.n_study} of them kept for the blind reading.` +
    (data.labels_problem ? ` labels.csv could not be read (${data.labels_problem}); saving replaces it.` : '');
  $('clusters').append(...data.clusters.map(card));
  document.body.dataset.ready = 'true';
}

$('save').addEventListener('click', save);
$('clusters').addEventListener('input', () => { unsaved = true; $('status').textContent = 'Unsaved changes.'; $('status').className = ''; });
$('clusters').addEventListener('keydown', e => {
  if (e.key === 'Enter' && e.target.matches('input[type=text]') && !e.repeat && !e.isComposing) { e.preventDefault(); save(); }
});
window.addEventListener('beforeunload', e => { if (unsaved) { e.preventDefault(); e.returnValue = ''; } });
load();
