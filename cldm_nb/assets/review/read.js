// The blind-reading page: one tile at a time; each answer is stored by the server before the next tile shows.
// An answer is saved once it has a call (Real or Synthetic) and a confidence, given in either order, or with Enter
// without a confidence. Keys with modifiers and auto-repeated keys do nothing; one answer can be taken back.
const $ = id => document.getElementById(id);
let state = null, busy = false, choice = null, undoable = false;

async function api(method, url, body) {
  let r;
  try { r = await fetch(url, {method, headers: {'Content-Type': 'application/json'}, body: body && JSON.stringify(body)}); }
  catch (e) { throw new Error(`Could not reach the server (${e.message}); is cldm review still running?`); }
  const data = await r.json().catch(() => ({error: `The server answered ${r.status} ${r.statusText}.`}));
  if (!r.ok) throw new Error(data.error || `The server answered ${r.status} ${r.statusText}.`);
  return data;
}

function showError(message) {
  $('answer-error').replaceChildren(...(message ? [Object.assign(document.createElement('span'), {textContent: message}),
    Object.assign(document.createElement('span'), {textContent: 'Your saved answers are kept: reload the page to continue from them.'})] : []));
}

function confidence() {
  const c = document.querySelector('input[name=confidence]:checked');
  return c ? Number(c.value) : null;
}

function setBusy(b) {
  busy = b;
  for (const id of ['real', 'synthetic']) $(id).disabled = b;
  $('save').disabled = b || choice === null;
  $('undo').disabled = b;
}

async function begin(name) {
  $('reader-error').textContent = '';
  try { state = await api('POST', '/api/study', {reader: name}); }
  catch (e) { $('reader-error').textContent = e.message; return; }
  history.replaceState(null, '', `?reader=${encodeURIComponent(state.reader)}`);
  $('start').hidden = true;
  show();
}

function show() {
  choice = null;
  $('undo').hidden = !undoable || state.done;           // finished: the answers are final once the results show
  setBusy(false);
  if (state.done) return results();
  $('results').hidden = true;
  $('study').hidden = false;
  document.body.dataset.finished = 'false';
  $('progress').textContent = `Tile ${state.position + 1} of ${state.n} · reader ${state.reader}`;
  $('study').dataset.position = state.position;
  document.querySelectorAll('input[name=confidence]').forEach(r => { r.checked = false; });
  for (const id of ['real', 'synthetic']) $(id).setAttribute('aria-pressed', 'false');
  $('hint').textContent = '';
  $('tile').src = state.tile_url;
}

function choose(kind) {
  if (busy || !state || state.done) return;
  choice = kind;
  for (const id of ['real', 'synthetic']) $(id).setAttribute('aria-pressed', String(id === kind));
  $('save').disabled = false;
  if (confidence() !== null) return submit();
  $('hint').textContent = `${kind === 'real' ? 'Real' : 'Synthetic'}: how sure are you (1–5)? Enter saves it without.`;
}

function setConfidence(value) {
  if (busy || !state || state.done) return;
  document.querySelector(`input[name=confidence][value="${value}"]`).checked = true;
  if (choice !== null) submit();
}

async function submit() {
  if (busy || choice === null) return;
  setBusy(true);
  try {
    state = await api('POST', `/api/study/${encodeURIComponent(state.reader)}/answer`,
                      {position: state.position, answer: choice, confidence: confidence()});
    undoable = true;
    showError('');
    show();
  } catch (e) { showError(e.message); setBusy(false); }
}

async function undo() {
  if (busy || !undoable || !state) return;
  setBusy(true);
  try {
    state = await api('POST', `/api/study/${encodeURIComponent(state.reader)}/undo`, {position: state.position - 1});
    undoable = false;                                   // one step
    showError('');
    show();
  } catch (e) { showError(e.message); setBusy(false); }
}

function results() {
  const r = state.results;
  $('study').hidden = true;
  $('results').hidden = false;
  $('summary').textContent = `${r.correct} of ${r.n} correct: ${r.accuracy_text} (95 % interval ${r.low_text} to ${r.high_text}). ` +
    `Real tiles called real: ${r.real.correct} of ${r.real.n}; generated tiles called synthetic: ${r.generated.correct} of ${r.generated.n}.`;
  $('verdict').textContent = r.verdict[0].toUpperCase() + r.verdict.slice(1);
  $('by-cluster').tBodies[0].replaceChildren(...r.clusters.map(c => {
    const tr = document.createElement('tr');
    for (const v of [c.name, c.n, c.correct, c.accuracy_text, `${c.low_text} to ${c.high_text}`])
      tr.append(Object.assign(document.createElement('td'), {textContent: v}));
    return tr;
  }));
  $('auc').textContent = r.auc === null ? 'Give a confidence with your answers to get the ROC AUC of your calls.'
    : `ROC AUC of your calls weighted by confidence (${r.n_confidence} answers): ${r.auc.toFixed(2)} (0.5: cannot tell; 1: always right).`;
  document.body.dataset.finished = 'true';
}

function zoom(src) {
  $('zoom-img').src = src;
  $('zoom').showModal();
}

$('begin').addEventListener('click', () => begin($('reader').value));
$('reader').addEventListener('keydown', e => { if (e.key === 'Enter' && !e.repeat) begin($('reader').value); });
$('real').addEventListener('click', () => choose('real'));
$('synthetic').addEventListener('click', () => choose('synthetic'));
$('save').addEventListener('click', submit);
$('undo').addEventListener('click', undo);
$('tile').addEventListener('click', () => zoom($('tile').src));
document.querySelectorAll('input[name=confidence]').forEach(r => r.addEventListener('change', () => { if (choice !== null) submit(); }));
document.addEventListener('keydown', e => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.shiftKey || e.repeat || e.isComposing) return;   // only plain, deliberate key presses
  if ($('zoom').open || e.target.matches('input[type=text], textarea') || !state) return;
  const k = e.key.toLowerCase();
  if (k === 'u') undo();
  else if ($('study').hidden) return;
  else if (k === 'r') choose('real');
  else if (k === 's') choose('synthetic');
  else if (k.length === 1 && '12345'.includes(k)) setConfidence(k);
  else if (k === 'enter' && choice !== null) submit();
  else return;
  e.preventDefault();
});
const asked = new URLSearchParams(location.search).get('reader');
if (asked) { $('reader').value = asked; begin(asked); }
