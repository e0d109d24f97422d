// The official openai Node SDK against a running crispy node's /v1 API. Run by test/sdk_test.go with
// the environment that openai_client.py describes, plus SDK_NODE_DIR (where scripts/sdk-clients.sh
// installed the SDK). Prints "ok <name>" or "FAIL <name>: <why>" per check; exits 1 when any failed.
import { createRequire } from 'node:module';

const require = createRequire(process.env.SDK_NODE_DIR + '/');
const OpenAIModule = require('openai');
const OpenAI = OpenAIModule.default ?? OpenAIModule.OpenAI ?? OpenAIModule;
const { APIError, AuthenticationError, PermissionDeniedError, NotFoundError, BadRequestError, RateLimitError } = OpenAI;

const BASE = process.env.CRISPY_BASE_URL;
const MODEL = process.env.CRISPY_MODEL;
const FORBIDDEN = process.env.CRISPY_FORBIDDEN_MODEL;
const EMBED = process.env.CRISPY_EMBED_MODEL;
const client = new OpenAI({ baseURL: BASE, apiKey: process.env.CRISPY_API_KEY, maxRetries: 0, timeout: 60_000 });
const failures = [];

function expect(cond, msg) {
  if (!cond) throw new Error('expectation failed: ' + JSON.stringify(msg));
}

async function check(name, fn) {
  try {
    await fn();
    console.log('ok', name);
  } catch (e) {
    failures.push(name);
    console.log('FAIL', name + ':', e?.stack ?? e);
  }
}

async function expectError(cls, fn, more = () => {}) {
  try {
    await fn();
  } catch (e) {
    expect(e instanceof cls, `${e?.constructor?.name} ${e?.status} ${e?.message}`);
    more(e);
    return;
  }
  throw new Error('no ' + cls.name);
}

const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];

await check('chat', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hello' }], max_tokens: 32 });
  expect(r.object === 'chat.completion' && r.choices.length === 1, r);
  expect(r.choices[0].message.content.includes('scripted reply'), r.choices[0].message);
  expect(r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens && r.usage.completion_tokens > 0, r.usage);
  const { response } = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }).withResponse();
  expect(response.headers.get('x-trace-id'), 'no x-trace-id');
});

await check('stream_with_usage', async () => {
  const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'stream' }],
    stream: true, stream_options: { include_usage: true } });
  let text = '';
  let last;
  for await (const c of stream) {
    if (c.choices.length) text += c.choices[0].delta.content ?? '';
    last = c;
  }
  expect(text.includes('scripted reply'), text);
  expect(last.choices.length === 0 && last.usage && last.usage.total_tokens > 0, last);
});

await check('tool_calls', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'weather?' }], tools: TOOLS });
  const call = r.choices[0].message.tool_calls?.[0];
  expect(r.choices[0].finish_reason === 'tool_calls' && call?.function.name === 'get_weather', r.choices[0]);
  expect(JSON.parse(call.function.arguments).city === 'Paris', call);
  // The SDK's runner executes the tool and sends its result back.
  const runner = client.chat.completions.runTools({ model: MODEL, messages: [{ role: 'user', content: 'weather?' }],
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: TOOLS[0].function.parameters,
      function: async ({ city }) => `sunny in ${city}`, parse: JSON.parse } }] });
  const final = await runner.finalContent();
  expect(final?.includes('scripted reply'), final);
});

await check('embeddings', async () => {
  const f = await client.embeddings.create({ model: EMBED, input: ['a b', 'c d'], encoding_format: 'float' });
  expect(f.data.length === 2 && f.data[0].embedding.length > 0, f);
  const b = await client.embeddings.create({ model: EMBED, input: 'a b' }); // the SDK asks for base64 and decodes it
  expect(b.data[0].embedding.length === f.data[0].embedding.length, b.data[0].embedding.length);
  expect(Math.abs(b.data[0].embedding[0] - f.data[0].embedding[0]) < 1e-6, 'base64 differs');
});

await check('models', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  expect(ids.includes(MODEL) && !ids.includes(FORBIDDEN), ids);
  const m = await client.models.retrieve(MODEL);
  expect(m.id === MODEL, m);
});

await check('speech', async () => {
  const res = await client.audio.speech.create({ model: 'tts-1', voice: 'shimmer', input: 'Hello.', response_format: 'opus' });
  const buf = Buffer.from(await res.arrayBuffer());
  expect(buf.subarray(0, 4).toString() === 'OggS', buf.subarray(0, 4).toString());
});

await check('responses_with_previous_response_id', async () => {
  const r1 = await client.responses.create({ model: MODEL, input: 'I live in Lyon.' });
  const r2 = await client.responses.create({ model: MODEL, input: 'Where do I live?', previous_response_id: r1.id });
  expect(r2.output_text.includes('turns=2') && r2.previous_response_id === r1.id, r2);
  const got = await client.responses.retrieve(r2.id);
  expect(got.output_text === r2.output_text, got);
});

await check('errors', async () => {
  const bad = new OpenAI({ baseURL: BASE, apiKey: 'sk-wrong', maxRetries: 0 });
  await expectError(AuthenticationError, () => bad.models.list());
  await expectError(PermissionDeniedError, () => client.chat.completions.create({ model: FORBIDDEN, messages: [{ role: 'user', content: 'x' }] }));
  await expectError(NotFoundError, () => client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => expect(e.code === 'model_not_found' && e.param === 'model', e.error));
  await expectError(BadRequestError, () => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], top_p: 7 }),
    (e) => expect(e.param === 'top_p', e.error));
  await expectError(APIError, () => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(2 << 20) }] }),
    (e) => expect(e.status === 413, e.status));
  const limited = new OpenAI({ baseURL: BASE, apiKey: process.env.CRISPY_LIMITED_KEY, maxRetries: 0 });
  await expectError(RateLimitError, async () => {
    for (let i = 0; i < 10; i++) await limited.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] });
  }, (e) => expect(Number(e.headers.get('retry-after')) > 0, 'no Retry-After'));
});

console.log(failures.length ? `${failures.length} failed: ${failures.join(', ')}` : 'all passed');
process.exit(failures.length ? 1 : 0);
