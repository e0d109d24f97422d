// Server-sent events over fetch: EventSource cannot POST or send headers, so /chat's stream is read
// from the response body and parsed here (the WHATWG event-stream format: fields per line, events
// separated by a blank line; data lines joined with "\n").
export async function* sseEvents(res, signal) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal?.addEventListener('abort', onAbort, {once: true});
  let buf = '';
  let ev = {event: 'message', data: []};
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (signal?.aborted) throw new DOMException('the stream was stopped', 'AbortError');
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (ev.data.length) yield {event: ev.event, data: ev.data.join('\n')};
          ev = {event: 'message', data: []};
          continue;
        }
        if (line.startsWith(':')) continue; // comment / keep-alive
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        let val = i < 0 ? '' : line.slice(i + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') ev.event = val;
        else if (field === 'data') ev.data.push(val);
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
