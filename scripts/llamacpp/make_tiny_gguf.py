"""Write a tiny random-weight llama GGUF model for protocol tests of an OpenAI-compatible server.

    python make_tiny_gguf.py OUT.gguf

The model is a real llama architecture (2 layers, width 64, 4 heads, SentencePiece-style vocabulary
of ~400 tokens with byte fallback, F32 tensors, ~0.5 MB) that llama.cpp loads, tokenizes with, generates
from and embeds with. Its weights are random (fixed seed, so the file is the same on every machine): its
text means nothing, and tests must assert on protocol and structure only.

Two properties are built in on purpose, so tests can be exact without reading the text:
- It never ends a reply early: one hidden dimension is a constant the residual stream carries to the
  output, and the output rows of the end-of-sequence, control, unknown and byte tokens weigh it by a
  large negative number. So a completion always runs to max_tokens, and usage.completion_tokens must
  equal max_tokens.
- Every token it can generate is a lower-case word piece, so its text can never contain a stop string
  such as "</s>", and each token decodes to non-empty text (one stream delta per token).
Embeddings are mean-pooled (llama.pooling_type = MEAN), one vector of length 64 per input.
"""

import sys

import numpy as np
import gguf

N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
N_CTX = 512
SEED = 20240817

WORDS = """the of and to in is it you that he was for on are with as his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing see
him two has look more day could go come did number sound no most people my over know water than call
first who may down side been now find any new work part take get place made live where after back
little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too same
tell does set three want air well also play small end put home read hand port large spell add even land
here must big high such follow act why ask men change went light kind off need house picture try us
again animal point mother world near build self earth father head stand own page should country found
answer school grow study still learn plant cover food sun four between state keep eye never last let
thought city tree cross farm hard start might story saw far sea draw left late run while press close
night real life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second book carry took
science eat room friend began idea fish mountain stop once base hear horse cut sure watch color face
wood main enough plain girl usual young ready above ever red list though feel talk bird soon body dog
family direct pose leave song measure door product black short numeral class wind question happen
complete ship area half rock order fire south problem piece told knew pass since top whole king space
heard best hour better true during hundred five remember step early hold west ground interest reach
fast verb sing listen six table travel less morning ten simple several vowel toward war lay against
pattern slow center love person money serve appear road map rain rule govern pull cold notice voice
unit power town fine certain fly fall lead cry dark machine note wait plan figure star box noun field
rest correct able pound done beauty drive stood contain front teach week final gave green oh quick
develop ocean warm free minute strong special mind behind clear tail produce fact street inch multiply
nothing course stay wheel full force blue object decide surface deep moon island foot system busy
test record boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape
equate miss brought heat snow tire bring yes distant fill east paint language among""".split()

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def vocabulary():
    tokens, scores, types = [], [], []

    def add(text, score, typ):
        tokens.append(text.encode("utf-8"))
        scores.append(score)
        types.append(typ)

    add("<unk>", 0.0, gguf.TokenType.UNKNOWN)
    add("<s>", 0.0, gguf.TokenType.CONTROL)
    add("</s>", 0.0, gguf.TokenType.CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", 0.0, gguf.TokenType.BYTE)
    # Single letters and the word-boundary mark, so any lower-case text tokenizes without bytes.
    add("\u2581", -1000.0, gguf.TokenType.NORMAL)
    for c in "abcdefghijklmnopqrstuvwxyz":
        add(c, -1000.0, gguf.TokenType.NORMAL)
    seen = set()
    for i, w in enumerate(WORDS):
        if w in seen:
            continue
        seen.add(w)
        add("\u2581" + w, -float(i), gguf.TokenType.NORMAL)
    return tokens, scores, types


def main(out):
    rng = np.random.default_rng(SEED)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    generable = np.array([t == gguf.TokenType.NORMAL for t in types])

    def rand(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = gguf.GGUFWriter(out, "llama")
    w.add_name("crispy-tiny-random")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    # Dimension 0 carries a constant 1 through the residual stream (the layers add only small values),
    # so after the final RMS norm it is large and positive for every position.
    embd = rand(n_vocab, N_EMBD)
    embd[:, 0] = 1.0
    w.add_tensor("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    out_w = rand(n_vocab, N_EMBD, scale=1.0)
    out_w[:, 0] = np.where(generable, 0.0, -10.0)  # never end, never emit control or byte tokens
    w.add_tensor("output.weight", out_w)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_k.weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_v.weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_output.weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.weight", rand(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down.weight", rand(N_EMBD, N_FF))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out}: vocab {n_vocab}, {N_LAYER} layers, width {N_EMBD}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tiny_gguf.py OUT.gguf")
    main(sys.argv[1])
