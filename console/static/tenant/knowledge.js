// Knowledge: upload files (multipart POST /ingest, one request per file so each has its own
// progress; a large file becomes a job whose progress comes from GET /ingest/jobs/:id), list and
// delete documents, and try a search with its sources, scores and cited answer.
import {h, clear, fmtInt, fmtBytes, fmtTime, table} from './common/dom.js';
import {get, post, del, authHeaders} from './api.js';
import {errorBanner, citeLinks, sourceList} from './ui.js';

const POLL_MS = 700;
const MAX_POLLS = 2000;

export function render(main) {
  let alive = true;
  const uploads = h('ul', {class: 'uploads', id: 'uploads', 'aria-label': 'Uploads'});
  const fileInput = h('input', {type: 'file', id: 'files', multiple: true,
    accept: '.txt,.md,.markdown,.html,.htm,.pdf,.json,text/plain,text/markdown,text/html,application/pdf,application/json'});
  const drop = h('label', {class: 'drop', for: 'files', id: 'drop', tabindex: '0'},
    h('strong', {}, 'Drop files here'), ' or press Enter to choose (text, Markdown, HTML, PDF, JSON).', fileInput);
  const docsBox = h('div', {id: 'documents'});
  const docsErr = h('div', {});

  drop.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); fileInput.click(); } });
  for (const t of ['dragenter', 'dragover']) drop.addEventListener(t, (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  for (const t of ['dragleave', 'drop']) drop.addEventListener(t, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => { ev.preventDefault(); uploadAll([...ev.dataTransfer.files]); });
  fileInput.addEventListener('change', () => { uploadAll([...fileInput.files]); fileInput.value = ''; });

  async function uploadAll(files) {
    await Promise.all(files.map(uploadOne));
    loadDocs();
  }

  // uploadOne sends one file with XMLHttpRequest, whose upload events give byte progress (fetch
  // has none), then follows the job if the server queued one.
  function uploadOne(file) {
    const bar = h('progress', {max: 100, value: 0, 'aria-label': `Progress of ${file.name}`});
    const note = h('span', {class: 'muted'}, 'uploading…');
    const row = h('li', {dataset: {file: file.name, state: 'uploading'}}, h('span', {}, file.name, ' ', h('span', {class: 'muted'}, fmtBytes(file.size))), bar, note);
    uploads.prepend(row);
    const set = (state, text, cls = 'muted') => { row.dataset.state = state; note.className = cls; note.textContent = text; };
    return new Promise((resolve) => {
      const form = new FormData();
      form.append('file', file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/ingest');
      for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
      xhr.responseType = 'json';
      xhr.upload.addEventListener('progress', (ev) => { if (ev.lengthComputable) bar.value = Math.round((ev.loaded / ev.total) * 50); });
      xhr.addEventListener('error', () => { set('failed', 'network error', 'error'); resolve(); });
      xhr.addEventListener('load', async () => {
        const env = xhr.response || {};
        if (xhr.status >= 400 || !env.ok) {
          set('failed', env.error ? `${env.error.message} (${env.error.code})` : `HTTP ${xhr.status}`, 'error');
          return resolve();
        }
        const d = env.data;
        if (xhr.status === 202 && d.jobId) {
          set('queued', `job ${d.jobId}: queued`);
          await followJob(d.jobId, bar, set);
          return resolve();
        }
        bar.value = 100;
        const r = (d.results || [])[0] || {};
        if (d.status === 'ingested') set('ingested', `ingested as ${r.docId}: ${fmtInt(r.chunks)} chunks`, 'ok');
        else set('failed', r.error ? `${r.error.message} (${r.error.code})` : d.status, 'error');
        resolve();
      });
      xhr.send(form);
    });
  }

  async function followJob(id, bar, set) {
    for (let i = 0; i < MAX_POLLS && alive; i++) {
      try {
        const st = await get(`/ingest/jobs/${encodeURIComponent(id)}`);
        bar.value = 50 + (st.total ? Math.round((st.done / st.total) * 50) : 0);
        if (st.status === 'done') {
          const r = (st.results || [])[0] || {};
          if (st.failed) set('failed', r.error ? `${r.error.message} (${r.error.code})` : `${st.failed} failed`, 'error');
          else set('ingested', `ingested as ${r.docId}: ${fmtInt(r.chunks)} chunks (job ${id})`, 'ok');
          return;
        }
        if (st.status === 'failed') return set('failed', st.error || 'job failed', 'error');
        set(st.status, `job ${id}: ${st.status} ${st.done}/${st.total}`);
      } catch (err) {
        return set('failed', err.message, 'error');
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  async function loadDocs() {
    clear(docsErr);
    try {
      const d = await get('/documents');
      clear(docsBox, table(`${d.count} documents`, [
        {label: 'Document', value: (r) => r.docId},
        {label: 'Title', value: (r) => r.title || r.source || ''},
        {label: 'Type', value: (r) => r.contentType || ''},
        {label: 'Chunks', num: true, value: (r) => fmtInt(r.chunks)},
        {label: 'Size', num: true, value: (r) => fmtBytes(r.bytes)},
        {label: 'Ingested', value: (r) => fmtTime(r.ingestedAt)},
        {label: 'Actions', value: (r) => h('button', {type: 'button', class: 'danger', 'aria-label': `Delete ${r.docId}`,
          onclick: () => remove(r.docId)}, 'Delete')},
      ], d.documents, 'No documents yet: upload one above.'));
    } catch (err) {
      docsErr.append(errorBanner(err));
    }
  }

  async function remove(id) {
    if (!confirm(`Delete ${id} and all its chunks?`)) return;
    try { await del(`/documents/${encodeURIComponent(id)}`); } catch (err) { docsErr.append(errorBanner(err)); }
    loadDocs();
  }

  const q = h('input', {type: 'search', id: 'query', required: true, maxlength: 10000, placeholder: 'How often does the moon orbit the earth?'});
  const topK = h('input', {type: 'number', id: 'topk', min: 1, max: 20, value: 5});
  const result = h('div', {id: 'search-result', 'aria-live': 'polite'});
  const searchForm = h('form', {id: 'search-form'},
    h('div', {class: 'row'}, h('div', {class: 'grow'}, h('label', {for: 'query'}, 'Question'), q),
      h('div', {}, h('label', {for: 'topk'}, 'Top K'), topK), h('button', {type: 'submit', id: 'search-btn'}, 'Search')));
  searchForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(result, h('p', {class: 'muted'}, 'Searching…'));
    try {
      const a = await post('/search', {query: q.value, topK: Number(topK.value) || 5});
      const known = new Set(a.sources.map((_, i) => i + 1));
      clear(result,
        h('h3', {}, 'Answer'),
        h('p', {class: 'answer', id: 'answer'}, citeLinks(a.answer || '', 'hit', known)),
        h('p', {class: 'muted'}, `confidence ${Number(a.confidence).toFixed(2)}${a.rewrittenQuery && a.rewrittenQuery !== q.value ? ' · searched as “' + a.rewrittenQuery + '”' : ''}`),
        h('h3', {}, `Sources (${a.sources.length})`),
        a.sources.length ? sourceList(a.sources, 'hit') : h('p', {class: 'muted'}, 'No passage matched.'));
      result.dataset.sources = String(a.sources.length);
    } catch (err) {
      clear(result, errorBanner(err));
    }
  });

  main.append(
    h('section', {class: 'panel', 'aria-labelledby': 'up-h'}, h('h2', {id: 'up-h'}, 'Upload'), drop, uploads),
    h('section', {class: 'panel', 'aria-labelledby': 'docs-h'}, h('h2', {id: 'docs-h'}, 'Documents'), docsErr, docsBox),
    h('section', {class: 'panel', 'aria-labelledby': 'search-h'}, h('h2', {id: 'search-h'}, 'Try a search'), searchForm, result));
  loadDocs();
  return () => { alive = false; };
}
