"""The official openai Python SDK and LangChain's ChatOpenAI against a running crispy node's /v1 API.

Run by test/sdk_test.go, which starts the node and a scripted upstream and sets:
  CRISPY_BASE_URL   the node's /v1 base URL
  CRISPY_API_KEY    a key of the test tenant
  CRISPY_LIMITED_KEY a key of a tenant whose rate limit admits two requests a minute
  CRISPY_MODEL      the scripted model: it answers "scripted reply turns=<user messages seen>" and
                    calls the first tool it is offered
  CRISPY_FORBIDDEN_MODEL a model a route serves but the tenant's allowedModels does not list
  CRISPY_LLAMA_MODEL the llama.cpp server's model, routed by the node ("" when LLAMACPP_URL is unset)
Each check prints "ok <name>" or "FAIL <name>: <why>"; the exit status is 1 when any failed.
"""

import base64
import os
import struct
import sys
import traceback

import openai
from openai import OpenAI

BASE = os.environ["CRISPY_BASE_URL"]
KEY = os.environ["CRISPY_API_KEY"]
MODEL = os.environ["CRISPY_MODEL"]
FORBIDDEN = os.environ["CRISPY_FORBIDDEN_MODEL"]
LIMITED_KEY = os.environ["CRISPY_LIMITED_KEY"]

# No retries: a 429 or 5xx must reach the test as the SDK's exception, not be retried away.
client = OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=60)
failures = []


def check(fn):
    try:
        fn()
        print("ok", fn.__name__, flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        failures.append(fn.__name__)
        print("FAIL", fn.__name__ + ":", repr(e), flush=True)
        traceback.print_exc(file=sys.stdout)
    return fn


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


@check
def chat():
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        max_tokens=32, temperature=0.2, top_p=0.9, seed=7, stop=["\n\n"], user="sdk-user")
    expect(r.object == "chat.completion", r.object)
    expect(r.id, "no id")
    expect(r.model == MODEL, f"model {r.model}")
    expect(len(r.choices) == 1 and r.choices[0].message.role == "assistant", r.choices)
    expect("scripted reply" in r.choices[0].message.content, r.choices[0].message.content)
    expect(r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
    expect(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage)
    expect(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "trace"}])
    expect(raw.headers.get("x-trace-id"), "no x-trace-id header")
    expect(raw.headers.get("x-request-id") == raw.headers.get("x-trace-id"), "x-request-id differs from x-trace-id")


@check
def chat_cached_answer_is_marked():
    msgs = [{"role": "user", "content": "cache me please"}]
    client.chat.completions.create(model=MODEL, messages=msgs, temperature=0)
    r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0)
    details = r.usage.prompt_tokens_details
    expect(details is not None and details.cached_tokens == r.usage.prompt_tokens, r.usage)


@check
def stream_with_usage():
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "stream please"}], stream=True,
        stream_options={"include_usage": True}, max_completion_tokens=64))
    expect(chunks, "no chunks")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expect("scripted reply" in text, text)
    expect(all(c.object == "chat.completion.chunk" for c in chunks), "object")
    expect(len({c.id for c in chunks}) == 1, "chunk ids differ")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    expect(finishes == ["stop"] or finishes == ["length"], finishes)
    last = chunks[-1]
    expect(last.choices == [] and last.usage is not None, last)
    expect(last.usage.completion_tokens > 0 and last.usage.total_tokens > 0, last.usage)


@check
def stream_without_usage():
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "stream again"}], stream=True))
    expect(all(c.usage is None for c in chunks), "usage sent without include_usage")


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@check
def tool_calls():
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "weather in Paris?"}], tools=TOOLS, tool_choice="auto")
    ch = r.choices[0]
    expect(ch.finish_reason == "tool_calls", ch.finish_reason)
    calls = ch.message.tool_calls
    expect(calls and calls[0].type == "function" and calls[0].function.name == "get_weather", calls)
    expect(calls[0].id, "no call id")
    import json
    expect(json.loads(calls[0].function.arguments) == {"city": "Paris"}, calls[0].function.arguments)
    # The tool's answer goes back as a tool message; the model then answers in text.
    r2 = client.chat.completions.create(model=MODEL, messages=[
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
    ])
    expect("scripted reply" in r2.choices[0].message.content, r2.choices[0].message)


@check
def tool_calls_streamed():
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "weather?"}], tools=TOOLS, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    expect(deltas and deltas[0].function.name == "get_weather" and deltas[0].index == 0, deltas)
    args = "".join(d.function.arguments or "" for d in deltas)
    expect(args == '{"city":"Paris"}', args)
    expect(chunks[-1].choices[0].finish_reason == "tool_calls", chunks[-1])


@check
def embeddings():
    r = client.embeddings.create(model=os.environ["CRISPY_EMBED_MODEL"], input=["first text", "second text"],
                                 encoding_format="float")
    expect(r.object == "list" and len(r.data) == 2, r)
    expect([d.index for d in r.data] == [0, 1], "indexes")
    dim = len(r.data[0].embedding)
    expect(dim > 0 and all(isinstance(x, float) for x in r.data[0].embedding), dim)
    expect(r.usage.prompt_tokens > 0, r.usage)
    one = client.embeddings.create(model=os.environ["CRISPY_EMBED_MODEL"], input="first text", encoding_format="base64")
    raw = base64.b64decode(one.data[0].embedding)
    vec = struct.unpack("<%df" % (len(raw) // 4), raw)
    expect(len(vec) == dim, (len(vec), dim))
    expect(max(abs(a - b) for a, b in zip(vec, r.data[0].embedding)) < 1e-6, "base64 differs from float")
    # The SDK's default (no encoding_format) asks for base64 and decodes it itself.
    d = client.embeddings.create(model=os.environ["CRISPY_EMBED_MODEL"], input="first text")
    expect(len(d.data[0].embedding) == dim, "default encoding")


@check
def embeddings_dimensions_refused():
    try:
        client.embeddings.create(model=os.environ["CRISPY_EMBED_MODEL"], input="x", dimensions=8)
    except openai.BadRequestError as e:
        expect(e.body.get("param") == "dimensions", e.body)
        return
    raise AssertionError("dimensions accepted")


@check
def models():
    ids = [m.id for m in client.models.list()]
    expect(MODEL in ids, ids)
    expect(FORBIDDEN not in ids, ids)
    m = client.models.retrieve(MODEL)
    expect(m.id == MODEL and m.object == "model", m)
    try:
        client.models.retrieve("no-such-model")
    except openai.NotFoundError:
        return
    raise AssertionError("unknown model retrieved")


@check
def speech():
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello from crispy.", response_format="wav")
    data = audio.read()
    expect(data[:4] == b"RIFF" and data[8:12] == b"WAVE", data[:12])
    mp3 = client.audio.speech.create(model="tts-1", voice="nova", input="Hello.")
    expect(len(mp3.read()) > 100, "mp3 too short")
    try:
        client.audio.speech.create(model="tts-1", voice="alloy", input="x", response_format="flac")
    except openai.BadRequestError as e:
        expect(e.body.get("param") == "response_format", e.body)
        return
    raise AssertionError("flac accepted")


@check
def responses_with_previous_response_id():
    r1 = client.responses.create(model=MODEL, input="My name is Ada.", instructions="be brief")
    expect(r1.object == "response" and r1.status == "completed", r1)
    expect(r1.id.startswith("resp_"), r1.id)
    expect("turns=1" in r1.output_text, r1.output_text)
    r2 = client.responses.create(model=MODEL, input="What is my name?", previous_response_id=r1.id)
    expect(r2.previous_response_id == r1.id, r2.previous_response_id)
    # The server kept the first turn: the model saw two user messages.
    expect("turns=2" in r2.output_text, r2.output_text)
    expect(r2.usage.input_tokens > r1.usage.input_tokens, (r1.usage, r2.usage))
    got = client.responses.retrieve(r2.id)
    expect(got.id == r2.id and got.output_text == r2.output_text, got)
    # A fork from the first response sees only the first turn, not the second.
    r3 = client.responses.create(model=MODEL, input="Another branch", previous_response_id=r1.id)
    expect("turns=2" in r3.output_text, r3.output_text)
    r4 = client.responses.create(model=MODEL, input="and on", previous_response_id=r2.id)
    expect("turns=3" in r4.output_text, r4.output_text)


@check
def responses_tool_call_round_trip():
    tools = [{"type": "function", "name": "get_time", "description": "Time in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    r1 = client.responses.create(model=MODEL, input="time in Paris?", tools=tools)
    calls = [o for o in r1.output if o.type == "function_call"]
    expect(len(calls) == 1 and calls[0].name == "get_time" and calls[0].call_id, r1.output)
    expect(calls[0].arguments == '{"city":"Paris"}', calls[0].arguments)
    # The tool's output goes back after the stored turn that asked for it.
    r2 = client.responses.create(model=MODEL, previous_response_id=r1.id, tools=tools,
                                 input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}])
    expect("scripted reply" in r2.output_text, r2.output)


@check
def responses_store_false():
    r = client.responses.create(model=MODEL, input="forget me", store=False)
    expect(r.store is False and "turns=1" in r.output_text, r)
    try:
        client.responses.retrieve(r.id)
    except openai.NotFoundError:
        return
    raise AssertionError("a store:false response was retrieved")


@check
def responses_stream():
    events = list(client.responses.create(model=MODEL, input="stream a response", stream=True))
    types = [e.type for e in events]
    expect(types[0] == "response.created" and types[-1] == "response.completed", types)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    expect("scripted reply" in text, text)
    expect(events[-1].response.output_text == text, events[-1].response)


@check
def error_401_bad_key():
    bad = OpenAI(base_url=BASE, api_key="sk-not-a-key", max_retries=0)
    try:
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    except openai.AuthenticationError as e:
        expect(e.status_code == 401 and e.body.get("code") == "invalid_api_key", e.body)
        return
    raise AssertionError("no AuthenticationError")


@check
def error_403_model_not_allowed():
    try:
        client.chat.completions.create(model=FORBIDDEN, messages=[{"role": "user", "content": "x"}])
    except openai.PermissionDeniedError as e:
        expect(e.body.get("code") == "model_not_allowed" and e.body.get("param") == "model", e.body)
        return
    raise AssertionError("no PermissionDeniedError")


@check
def error_404_model_not_found():
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as e:
        expect(e.body.get("code") == "model_not_found" and e.body.get("param") == "model", e.body)
        expect(e.response.headers.get("x-trace-id"), "no trace id")
        return
    raise AssertionError("no NotFoundError")


@check
def error_400_with_param():
    cases = [({"temperature": 3}, "temperature"), ({"n": 2}, "n"), ({"messages": []}, "messages")]
    for extra, param in cases:
        args = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        args.update(extra)
        try:
            client.chat.completions.create(**args)
        except openai.BadRequestError as e:
            expect(e.body.get("param") == param and e.body.get("type") == "invalid_request_error", e.body)
            continue
        raise AssertionError(f"{extra} accepted")


@check
def error_413_too_large():
    try:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * (2 << 20)}])
    except openai.APIStatusError as e:
        expect(e.status_code == 413 and e.body.get("code") == "payload_too_large", (e.status_code, e.body))
        return
    raise AssertionError("no 413")


@check
def error_429_rate_limited():
    limited = OpenAI(base_url=BASE, api_key=LIMITED_KEY, max_retries=0)
    for _ in range(10):
        try:
            limited.models.retrieve(MODEL)  # not rate limited: it calls no model
            limited.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        except openai.RateLimitError as e:
            expect(e.body.get("code") == "rate_limit_exceeded", e.body)
            expect(int(e.response.headers.get("retry-after", "0")) > 0, dict(e.response.headers))
            return
    raise AssertionError("no RateLimitError")


LLAMA = os.environ.get("CRISPY_LLAMA_MODEL", "")


@check
def llama_cpp_chat_and_stream():
    if not LLAMA:
        print("skip llama_cpp_chat_and_stream: LLAMACPP_URL is not set", flush=True)
        return
    # A random-weight model: its text means nothing, the protocol and the usage must hold.
    r = client.chat.completions.create(model=LLAMA, messages=[{"role": "user", "content": "tell me a story"}],
                                       max_tokens=6, temperature=0)
    expect(r.model == LLAMA and r.choices[0].message.content, r)
    expect(r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0, r.usage)
    chunks = list(client.chat.completions.create(
        model=LLAMA, messages=[{"role": "user", "content": "tell me a story"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True}))
    expect("".join(c.choices[0].delta.content or "" for c in chunks if c.choices), "empty stream")
    expect(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0, chunks[-1])


@check
def langchain_rag_chain():
    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    # check_embedding_ctx_length=False sends strings: the node does not share OpenAI's tokenizer.
    emb = OpenAIEmbeddings(model=os.environ["CRISPY_EMBED_MODEL"], base_url=BASE, api_key=KEY,
                           check_embedding_ctx_length=False, max_retries=0)
    store = InMemoryVectorStore.from_documents([
        Document(page_content="The crispy node stores chat sessions in JetStream."),
        Document(page_content="Rainbows have seven colours."),
        Document(page_content="Budgets are reserved before a model call and committed after it."),
    ], emb)
    retriever = store.as_retriever(search_kwargs={"k": 2})
    llm = ChatOpenAI(model=MODEL, base_url=BASE, api_key=KEY, max_retries=0, temperature=0)
    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer from the context.\n\nContext:\n{context}"), ("user", "{question}")])
    chain = ({"context": retriever | (lambda docs: "\n".join(d.page_content for d in docs)),
              "question": RunnablePassthrough()} | prompt | llm | StrOutputParser())
    answer = chain.invoke("Where are chat sessions stored?")
    expect("scripted reply" in answer, answer)
    docs = retriever.invoke("Where are chat sessions stored?")
    expect(any("JetStream" in d.page_content for d in docs), docs)
    streamed = "".join(chain.stream("How are budgets charged?"))
    expect("scripted reply" in streamed, streamed)


print(f"{len(failures)} failed: {failures}" if failures else "all passed", flush=True)
sys.exit(1 if failures else 0)
