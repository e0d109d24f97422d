// Playground: streaming chat over POST /chat (SSE read with fetch), sessions with their history,
// model picker, system prompt, tool calls inline, citations linked to their passages, Stop.
import {h, clear, fmtInt} from './common/dom.js';
import {raw, get, post, del, creds} from './api.js';
import {sseEvents} from './sse.js';
import {errorBanner, citeLinks, sourceList} from './ui.js';

const MAX_SESSIONS = 50;

function sessionsKey() { return 'crispy.console.sessions.' + (creds()?.tenantId || ''); }

// The session list is this browser's (localStorage): IDs and titles only, never messages; the
// messages come from GET /chat/:id/history.
function loadSessions() {
  try { return JSON.parse(localStorage.getItem(sessionsKey())) || []; } catch { return []; }
}
function saveSessions(list) { localStorage.setItem(sessionsKey(), JSON.stringify(list.slice(0, MAX_SESSIONS))); }

// newSessionId uses getRandomValues, which (unlike randomUUID) works outside secure contexts too,
// e.g. a node reached over plain HTTP on a LAN address.
function newSessionId() {
  const b = crypto.getRandomValues(new Uint8Array(10));
  return 'c-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function render(main, {health}) {
  let sessions = loadSessions();
  let current = sessions[0]?.id || newSessionId();
  let controller = null;
  let seq = 0;

  const models = [...new Set([health.modelId, health.fallbackModelId, 'local/extractive'].filter(Boolean))];
  const modelSel = h('select', {id: 'model'}, models.map((m) => h('option', {value: m}, m)));
  const savedModel = sessionStorage.getItem('crispy.console.model');
  if (savedModel && models.includes(savedModel)) modelSel.value = savedModel;
  modelSel.addEventListener('change', () => sessionStorage.setItem('crispy.console.model', modelSel.value));
  // Every model the tenant may use, from GET /v1/models (exactly its allow-list when it has one),
  // less its embedding and speech models, which cannot chat.
  const notChat = new Set(['local/hash-embed', 'local/minilm', health.embeddings?.configured, health.embeddings?.embeddingModel]);
  raw('GET', '/v1/models').then((res) => res.json()).then((list) => {
    for (const m of list.data || []) {
      if (notChat.has(m.id) || /^tts-|-tts$/.test(m.id) || models.includes(m.id)) continue;
      models.push(m.id);
      modelSel.append(h('option', {value: m.id}, m.id));
    }
    if (savedModel && models.includes(savedModel)) modelSel.value = savedModel;
  }).catch(() => {}); // the models /health names stay offered
  const system = h('textarea', {id: 'system', rows: 2, maxlength: 10000, placeholder: 'You are a helpful assistant.'});
  system.value = sessionStorage.getItem('crispy.console.system') || '';
  system.addEventListener('change', () => sessionStorage.setItem('crispy.console.system', system.value));
  const input = h('textarea', {id: 'message', rows: 3, maxlength: 10000, required: true, placeholder: 'Ask something… (Enter sends, Shift+Enter for a new line)'});
  const send = h('button', {type: 'submit', id: 'send'}, 'Send');
  const stop = h('button', {type: 'button', id: 'stop', class: 'danger', disabled: true}, 'Stop');
  const clearBtn = h('button', {type: 'button', id: 'clear-session', class: 'secondary'}, 'Clear session');
  const status = h('div', {role: 'status', class: 'muted', id: 'chat-status'});
  const errors = h('div', {id: 'chat-error'});
  const log = h('div', {class: 'log', id: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation'});
  const list = h('ul', {id: 'session-list'});
  const title = h('h2', {id: 'session-title'});

  function renderList() {
    clear(list, sessions.map((s) => h('li', {}, h('button', {type: 'button', 'aria-current': s.id === current ? 'true' : 'false',
      title: s.id, onclick: () => open(s.id)}, s.title || s.id))));
    if (!sessions.length) list.append(h('li', {class: 'muted'}, 'No sessions yet.'));
    clear(title, 'Session ', h('code', {}, current));
  }

  function remember(id, text) {
    const old = sessions.find((s) => s.id === id);
    sessions = [{id, title: old?.title || text.slice(0, 60), updated: Date.now()}, ...sessions.filter((s) => s.id !== id)];
    saveSessions(sessions);
    renderList();
  }

  function bubble(role, text = '') {
    const body = h('span', {class: 'body'}, text);
    const el = h('div', {class: 'msg ' + role, dataset: {role}}, h('span', {class: 'role'}, role), body);
    log.append(el);
    log.scrollTop = log.scrollHeight;
    return {el, body};
  }

  async function open(id) {
    if (controller) controller.abort();
    current = id;
    renderList();
    clear(log);
    clear(errors);
    status.textContent = 'Loading history…';
    try {
      const data = await get(`/chat/${encodeURIComponent(id)}/history?limit=200`);
      for (const m of data.messages) bubble(m.role, m.content);
      status.textContent = data.messages.length ? `${data.messages.length} messages` : 'Empty session';
    } catch (err) {
      status.textContent = '';
      errors.append(errorBanner(err));
    }
  }

  // attachCitations asks /search with the question when the reply cites [n] passages (the built-in
  // local/extractive model does), and links each marker to its passage.
  async function attachCitations(question, reply, msg) {
    if (!/\[\d{1,2}\]/.test(reply)) return;
    try {
      const a = await post('/search', {query: question, topK: 5});
      if (!a.sources?.length) return;
      const prefix = `src-${++seq}`;
      const known = new Set(a.sources.map((_, i) => i + 1));
      clear(msg.body, citeLinks(reply, prefix, known));
      msg.el.append(h('details', {open: true}, h('summary', {}, 'Sources'), sourceList(a.sources, prefix)));
    } catch { /* citations are a bonus: the reply stands without them */ }
  }

  async function sendMessage(text) {
    clear(errors);
    remember(current, text);
    bubble('user', text);
    const reply = bubble('assistant');
    reply.el.dataset.tokens = '0';
    reply.el.setAttribute('aria-busy', 'true');
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    status.textContent = 'Streaming…';
    let content = '';
    let tokens = 0;
    try {
      const body = {message: text, sessionId: current, stream: true, modelId: modelSel.value};
      if (system.value.trim()) body.system = system.value;
      const res = await raw('POST', '/chat', {json: body, signal: controller.signal});
      for await (const ev of sseEvents(res, controller.signal)) {
        let data;
        try { data = JSON.parse(ev.data); } catch { continue; }
        if (ev.event === 'message') {
          content += data.content || '';
          tokens++;
          reply.body.textContent = content;
          reply.el.dataset.tokens = String(tokens);
          log.scrollTop = log.scrollHeight;
        } else if (ev.event === 'tool_call') {
          log.insertBefore(h('div', {class: 'tool', dataset: {kind: 'tool_call'}}, h('strong', {}, `Tool call · ${data.name}`),
            data.round ? ` (round ${data.round})` : '', '\n', h('code', {}, data.arguments || '')), reply.el);
        } else if (ev.event === 'tool_result') {
          const ok = data.success !== false;
          log.insertBefore(h('div', {class: 'tool', dataset: {kind: 'tool_result'}},
            h('strong', {class: ok ? 'ok' : 'error'}, `Tool result · ${data.name} · ${ok ? 'ok' : 'failed'}`),
            data.durationMs !== undefined ? ` · ${data.durationMs} ms` : '', '\n',
            h('code', {}, JSON.stringify(ok ? data.data : data.error, null, 2))), reply.el);
        } else if (ev.event === 'error') {
          errors.append(errorBanner({message: `${data.message} (${data.code}${data.traceId ? ', trace ' + data.traceId : ''})`}));
        } else if (ev.event === 'done') {
          const u = data.usage || {};
          reply.el.dataset.done = 'true';
          reply.el.append(h('span', {class: 'meta'}, `${u.modelId || ''} · ${fmtInt(u.tokensIn)} in / ${fmtInt(u.tokensOut)} out tokens · ${fmtInt(u.latencyMs)} ms`));
        }
      }
      status.textContent = reply.el.dataset.done ? 'Done.' : 'The stream ended without its done event.';
      if (reply.el.dataset.done) attachCitations(text, content, reply);
    } catch (err) {
      if (err.name === 'AbortError') {
        status.textContent = 'Stopped: the server cancels the model call; a stopped reply is not stored.';
        reply.el.dataset.stopped = 'true';
        reply.el.append(h('span', {class: 'meta'}, 'stopped'));
      } else {
        status.textContent = '';
        errors.append(errorBanner(err));
        if (!content) reply.el.remove();
      }
    } finally {
      reply.el.removeAttribute('aria-busy');
      controller = null;
      send.disabled = false;
      stop.disabled = true;
    }
  }

  const form = h('form', {class: 'composer', id: 'chat-form'},
    h('label', {for: 'message'}, 'Message'), input,
    h('div', {class: 'row composer'}, send, stop, h('span', {class: 'grow'}), clearBtn), status, errors);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    input.value = '';
    sendMessage(text);
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener('click', () => controller?.abort());
  clearBtn.addEventListener('click', async () => {
    if (!confirm('Delete every message of this session on the server?')) return;
    clear(errors);
    try {
      await del(`/chat/${encodeURIComponent(current)}`);
      sessions = sessions.filter((s) => s.id !== current);
      saveSessions(sessions);
      current = newSessionId();
      renderList();
      clear(log);
      status.textContent = 'Session cleared.';
    } catch (err) {
      errors.append(errorBanner(err));
    }
  });

  const newBtn = h('button', {type: 'button', id: 'new-session', class: 'secondary'}, 'New session');
  newBtn.addEventListener('click', () => {
    if (controller) controller.abort();
    current = newSessionId();
    renderList();
    clear(log);
    clear(errors);
    status.textContent = '';
    input.focus();
  });

  main.append(h('div', {class: 'play'},
    h('section', {class: 'panel sessions', 'aria-labelledby': 'sessions-h'}, h('h2', {id: 'sessions-h'}, 'Sessions'), newBtn, list),
    h('section', {class: 'panel', 'aria-labelledby': 'session-title'}, title,
      h('div', {class: 'row'},
        h('div', {class: 'grow'}, h('label', {for: 'model'}, 'Model'), modelSel)),
      h('details', {}, h('summary', {}, 'System prompt'), h('label', {for: 'system', class: 'visually-hidden'}, 'System prompt'), system),
      log, form)));
  renderList();
  if (sessions.some((s) => s.id === current)) open(current);
  input.focus();
  return () => controller?.abort();
}

