// Speech: POST /tts with the chosen voice and format; the audio comes back as bytes (with the key
// in a header, so an <audio src> URL cannot fetch it) and plays from a blob: URL.
import {h, clear, fmtInt} from './common/dom.js';
import {raw, get} from './api.js';
import {errorBanner} from './ui.js';

export function render(main) {
  let url = null;
  const text = h('textarea', {id: 'tts-text', rows: 4, maxlength: 5000, required: true}, 'Hello from the crispy console.');
  const voice = h('select', {id: 'voice'}, h('option', {value: ''}, 'default'));
  const format = h('select', {id: 'format'}, ['mp3', 'wav', 'opus'].map((f) => h('option', {value: f}, f)));
  const speed = h('input', {type: 'number', id: 'speed', min: 0.5, max: 2, step: 0.1, value: 1});
  const speak = h('button', {type: 'submit', id: 'speak'}, 'Speak');
  const audio = h('audio', {id: 'audio', controls: true, preload: 'auto'});
  const info = h('p', {class: 'muted', role: 'status', id: 'tts-info'});
  const errors = h('div', {});

  get('/tts/voices').then((d) => {
    const voices = d.voices || [];
    for (const v of voices) {
      const id = typeof v === 'string' ? v : v.id || v.name;
      const label = typeof v === 'string' ? v : [v.name || v.id, v.language].filter(Boolean).join(' · ');
      voice.append(h('option', {value: id}, label));
    }
  }).catch((err) => errors.append(errorBanner(err)));

  const form = h('form', {id: 'tts-form'},
    h('label', {for: 'tts-text'}, 'Text'), text,
    h('div', {class: 'row'},
      h('div', {class: 'grow'}, h('label', {for: 'voice'}, 'Voice'), voice),
      h('div', {}, h('label', {for: 'format'}, 'Format'), format),
      h('div', {}, h('label', {for: 'speed'}, 'Speed'), speed)),
    h('div', {class: 'row composer'}, speak), errors, audio, info);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(errors);
    speak.disabled = true;
    info.textContent = 'Synthesizing…';
    try {
      const body = {text: text.value, format: format.value, speed: Number(speed.value) || 1};
      if (voice.value) body.voice = voice.value;
      const res = await raw('POST', '/tts', {json: body});
      const blob = await res.blob();
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(blob);
      audio.src = url;
      info.textContent = `${fmtInt(res.headers.get('x-tts-characters'))} characters · ${blob.type || format.value} · ${fmtInt(blob.size)} bytes` +
        (res.headers.get('x-audio-duration-ms') ? ` · ${(Number(res.headers.get('x-audio-duration-ms')) / 1000).toFixed(2)} s` : '');
      await audio.play().catch(() => { info.textContent += ' · press play'; });
    } catch (err) {
      info.textContent = '';
      errors.append(errorBanner(err));
    } finally {
      speak.disabled = false;
    }
  });

  main.append(h('section', {class: 'panel', 'aria-labelledby': 'tts-h'}, h('h2', {id: 'tts-h'}, 'Speech'), form));
  return () => { if (url) URL.revokeObjectURL(url); };
}
