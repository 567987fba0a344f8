// The blind-reading page: one tile at a time; each answer is stored by the server before the next tile shows.
const $ = id => document.getElementById(id);
const pct = x => `${(100 * x).toFixed(0)} %`;
let state = null, busy = false;

async function api(method, url, body) {
  const r = await fetch(url, {method, headers: {'Content-Type': 'application/json'}, body: body && JSON.stringify(body)});
  const data = await r.json().catch(() => ({error: `${r.status} ${r.statusText}`}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function setBusy(b) { busy = b; $('real').disabled = b; $('synthetic').disabled = b; }

async function begin(name) {
  $('reader-error').textContent = '';
  try { state = await api('POST', '/api/study', {reader: name}); }
  catch (e) { $('reader-error').textContent = e.message; return; }
  history.replaceState(null, '', `?reader=${encodeURIComponent(state.reader)}`);
  $('start').hidden = true;
  show();
}

function show() {
  if (state.done) return results();
  $('study').hidden = false;
  $('progress').textContent = `Tile ${state.position + 1} of ${state.n} · reader ${state.reader}`;
  $('study').dataset.position = state.position;
  document.querySelectorAll('input[name=confidence]').forEach(r => { r.checked = false; });
  $('tile').src = state.tile_url;
  setBusy(false);
}

async function answer(kind) {
  if (busy || !state || state.done) return;
  setBusy(true);
  const c = document.querySelector('input[name=confidence]:checked');
  try {
    state = await api('POST', `/api/study/${encodeURIComponent(state.reader)}/answer`,
                      {position: state.position, answer: kind, confidence: c ? Number(c.value) : null});
    $('answer-error').textContent = '';
    show();
  } catch (e) {
    $('answer-error').textContent = `${e.message} Reload the page to continue from the saved answers.`;
    setBusy(false);
  }
}

function results() {
  const r = state.results;
  $('study').hidden = true;
  $('results').hidden = false;
  $('summary').textContent = `${r.correct} of ${r.n} correct: ${pct(r.accuracy)} (95 % interval ${pct(r.low)} to ${pct(r.high)}). ` +
    `Real tiles called real: ${r.real.correct} of ${r.real.n}; generated tiles called synthetic: ${r.generated.correct} of ${r.generated.n}.`;
  $('verdict').textContent = r.low > 0.5 ? 'The interval lies above 50 %: you told generated tiles from real ones better than chance.'
    : r.high < 0.5 ? 'The interval lies below 50 %: you took generated tiles for real (and real for generated) more often than not.'
    : 'The interval includes 50 %: on these tiles you could not tell generated from real better than chance.';
  $('by-cluster').tBodies[0].replaceChildren(...r.clusters.map(c => {
    const tr = document.createElement('tr');
    for (const v of [c.name, c.n, c.correct, pct(c.accuracy), `${pct(c.low)} to ${pct(c.high)}`])
      tr.append(Object.assign(document.createElement('td'), {textContent: v}));
    return tr;
  }));
  $('auc').textContent = r.auc === null ? 'Give a confidence with your answers to get the ROC AUC of your calls.'
    : `ROC AUC of your calls weighted by confidence (${r.n_confidence} answers): ${r.auc.toFixed(2)} (0.5: cannot tell; 1: always right).`;
  document.body.dataset.finished = 'true';
}

$('begin').addEventListener('click', () => begin($('reader').value));
$('reader').addEventListener('keydown', e => { if (e.key === 'Enter') begin($('reader').value); });
$('real').addEventListener('click', () => answer('real'));
$('synthetic').addEventListener('click', () => answer('synthetic'));
document.addEventListener('keydown', e => {
  if ($('study').hidden || e.target.tagName === 'INPUT' && e.target.type === 'text') return;
  const k = e.key.toLowerCase();
  if (k === 'r') answer('real');
  else if (k === 's') answer('synthetic');
  else if ('12345'.includes(k) && k.length === 1) document.querySelector(`input[name=confidence][value="${k}"]`).checked = true;
});
const asked = new URLSearchParams(location.search).get('reader');
if (asked) { $('reader').value = asked; begin(asked); }
