# ruff: noqa: E501, E741, E743 - a one-off measurement run in a scratch venv (see the docstring); its tables are wide
"""xgrammar vs llguidance for constrained JSON decoding (OpenAI Structured Outputs / JSON mode), measured.

With the bundled model's tokenizer (SmolLM2-135M-Instruct, vocab 49152), for each library:
1. coverage: ~50 schemas in the subset OpenAI documents for strict Structured Outputs, plus a few keywords outside
   it, plus json_object mode. Per schema: compiled or rejected (with the error), the valid instance accepted, and an
   instance that breaks the schema's keyword rejected ("IGNORED" when it is accepted: the keyword silently dropped);
2. compile time per schema (ms) and the time to a first mask (compile + matcher + first mask), the tokenizer info
   built once (its cost printed first);
3. per-token cost of a batch-1 loop (mask into an int32 bitmask, applied to float32 numpy logits, then the real
   token advanced), mean and p95 us; a batch of 8 matchers per step, serially and with the library's batch API;
   set against one decode step of the fast engine (README: 9.1 ms for 1 row, 20.3 ms for 8 rows, --step-ms);
4. correctness: random walks (a random allowed token each step, biased toward closing tokens and EOS, at most 300
   tokens) on 11 schemas, each output parsed and validated with jsonschema (FormatChecker; date-time/hostname/ipv6
   are not checked without optional packages). Steps where a special token other than EOS is allowed are counted
   (xgrammar 0.2.9 allows <|im_start|> etc. inside strings unless --xgr-blank-specials marks them special).

It needs neither tuneloop nor its venv. Scratch venv (xgrammar imports torch and transformers at import time):
    python3 -m venv /tmp/gv && /tmp/gv/bin/pip install llguidance==1.9.1 numpy tokenizers==0.23.3 jsonschema
    /tmp/gv/bin/pip install --no-deps xgrammar==0.2.9 apache-tvm-ffi && /tmp/gv/bin/pip install pydantic \
        torch==2.13.0 transformers==5.25.0
Run: /tmp/gv/bin/python bench/grammar_choice.py [--tokenizer PATH/tokenizer.json] [--samples 10] [--threads 2] [--xgr-blank-specials]
"""

import argparse
import glob
import json
import os
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import jsonschema
import llguidance as llg
import llguidance.numpy as lnp
import numpy as np
import torch
import xgrammar as xgr
from tokenizers import Tokenizer

V, EOS, NO = 49152, 2, object()
now = time.perf_counter


def find_tokenizer():
    home = os.environ.get("TUNELOOP_HOME", os.path.expanduser("~/.local/share/tuneloop"))
    roots = [
        os.environ.get("TUNELOOP_MODELS_DIR", ""),
        f"{home}/models",
        str(Path(__file__).resolve().parents[1] / ".cache/test-models"),
    ]
    for r in filter(None, roots):
        hits = sorted(
            glob.glob(f"{r}/**/smollm2-135m-instruct*/**/tokenizer.json", recursive=True)
            + glob.glob(f"{r}/smollm2-135m-instruct*/tokenizer.json")
        )
        if hits:
            return hits[0]
    raise SystemExit("no tokenizer.json found: pass --tokenizer")


def O(**props):
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def S(**kw):
    return {"type": "string", **kw}


def C(name, sub, valid, invalid=NO, raw=False):  # wraps sub as {"v": sub} unless raw
    w = (lambda x: x) if raw else (lambda x: {"v": x})
    return name, (sub if raw else O(v=sub)), w(valid), (NO if invalid is NO else w(invalid))


ADDR = O(street=S(), city=S(), zip=S(pattern=r"^\d{5}$"))
PERSON = {
    **O(
        name=S(description="full name"),
        age={"type": "integer", "minimum": 0, "maximum": 150},
        email=S(format="email"),
        role={"enum": ["admin", "user", "guest"]},
        tags={"type": "array", "items": S()},
        address={"anyOf": [{"$ref": "#/$defs/addr"}, {"type": "null"}]},
        nick={"type": ["string", "null"]},
        active={"type": "boolean"},
    ),
    "$defs": {"addr": ADDR},
}
PERSON_DOC = {
    "name": "Ada Lovelace",
    "age": 36,
    "email": "ada@example.com",
    "role": "admin",
    "tags": ["math", "poetry", "engines"],
    "address": {"street": "12 St James's Square", "city": "London", "zip": "12345"},
    "nick": None,
    "active": True,
}
TREE = {
    "$defs": {"node": O(value={"type": "integer"}, children={"type": "array", "items": {"$ref": "#/$defs/node"}})},
    "$ref": "#/$defs/node",
}
TREE_DOC = {
    "value": 1,
    "children": [
        {"value": 2, "children": []},
        {"value": 3, "children": [{"value": 4, "children": []}, {"value": 5, "children": []}]},
    ],
}
ROOTREC = {**O(name=S(), sub={"anyOf": [{"$ref": "#"}, {"type": "null"}]})}
ANYOBJ_DOC = {
    "id": 7,
    "items": [{"sku": "A-1", "qty": 2, "price": 9.99}, {"sku": "B-22", "qty": 1, "price": 0.5}],
    "note": "rush ✓",
    "ok": True,
    "x": None,
}
BIG = O(
    **{
        f"field_{i}": [S(), {"type": "integer"}, {"type": "boolean"}, {"type": ["number", "null"]}][i % 4]
        for i in range(24)
    }
)
BIG_DOC = {f"field_{i}": ["text", i, True, None][i % 4] for i in range(24)}
BIGENUM = [f"item-{i:03d}" for i in range(120)]
CASES = [
    C("string", S(), "Ada", 1),
    C("number", {"type": "number"}, -12.5e3, "x"),
    C("integer", {"type": "integer"}, 42, 1.5),
    C("boolean", {"type": "boolean"}, False, "true"),
    C("null", {"type": "null"}, None, 0),
    C("enum str", {"enum": ["red", "green", "blue"]}, "green", "pink"),
    C("enum mixed", {"enum": [1, "a", None, True]}, None, 2),
    C("enum int", {"type": "integer", "enum": [2, 4, 8]}, 8, 3),
    C("enum 120", {"type": "string", "enum": BIGENUM}, "item-077", "item-200"),
    C("const", {"const": "v1"}, "v1", "v2"),
    C("anyOf str|int", {"anyOf": [S(), {"type": "integer"}]}, 3, True),
    C(
        "anyOf objects",
        {"anyOf": [O(kind={"const": "a"}, x={"type": "integer"}), O(kind={"const": "b"}, y=S())]},
        {"kind": "b", "y": "z"},
        {"kind": "a", "y": "z"},
    ),
    C("nested 3 levels", O(a=O(b=O(c=S()))), {"a": {"b": {"c": "deep"}}}, {"a": {"b": {}}}),
    C("array of str", {"type": "array", "items": S()}, ["a", "b"], [1]),
    C(
        "array of obj",
        {"type": "array", "items": O(k=S(), n={"type": "number"})},
        [{"k": "a", "n": 1}, {"k": "b", "n": 2.5}],
        [{"k": "a"}],
    ),
    C(
        "matrix",
        {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        [[1, 2], [3.5, -4]],
        [[1, "2"]],
    ),
    C("nullable str", {"type": ["string", "null"]}, None, 3),
    C(
        "nullable obj",
        {"type": ["object", "null"], "properties": {"a": S()}, "required": ["a"], "additionalProperties": False},
        {"a": "x"},
        {"b": "x"},
    ),
    C("required", O(a=S(), b={"type": "integer"}), {"a": "x", "b": 1}, {"a": "x"}),
    C("addlProps false", O(a=S()), {"a": "x"}, {"a": "x", "b": 1}),
    C(
        "optional prop",
        {"type": "object", "properties": {"a": S(), "b": S()}, "required": ["a"], "additionalProperties": False},
        {"a": "x"},
        {"b": "x"},
    ),
    C(
        "addlProps omitted",
        {"type": "object", "properties": {"a": S()}, "required": ["a"]},
        {"a": "x", "extra": 1},
        {"extra": 1},
    ),
    C(
        "$defs+$ref",
        {**O(home={"$ref": "#/$defs/addr"}, work={"$ref": "#/$defs/addr"}), "$defs": {"addr": ADDR}},
        {
            "home": {"street": "1 A", "city": "B", "zip": "12345"},
            "work": {"street": "2 C", "city": "D", "zip": "54321"},
        },
        {"home": {"street": "1 A", "city": "B"}, "work": {}},
        raw=True,
    ),
    C("recursive $defs", TREE, TREE_DOC, {"value": 1, "children": [{"value": "2", "children": []}]}, raw=True),
    C(
        "recursive root #",
        ROOTREC,
        {"name": "a", "sub": {"name": "b", "sub": None}},
        {"name": "a", "sub": {"name": 1, "sub": None}},
        raw=True,
    ),
    C("pattern", S(pattern=r"^[A-Z]{3}-\d{4}$"), "ABC-1234", "abc-1234"),
    C("pattern unanchored", S(pattern=r"\d{3}"), "x123y", "xy"),
    C("pattern in items", {"type": "array", "items": S(pattern=r"^#[0-9a-f]{6}$")}, ["#00ff00"], ["red"]),
    C("format date-time", S(format="date-time"), "2024-05-01T12:30:00Z", "yesterday"),
    C("format date", S(format="date"), "2024-05-01", "May 1"),
    C("format time", S(format="time"), "12:30:00Z", "noon"),
    C("format duration", S(format="duration"), "P3DT4H", "3 days"),
    C("format email", S(format="email"), "ada@example.com", "not-an-email"),
    C("format uuid", S(format="uuid"), "123e4567-e89b-12d3-a456-426614174000", "1234"),
    C("format hostname", S(format="hostname"), "api.example.com", "-bad-.com!"),
    C("format ipv4", S(format="ipv4"), "192.168.0.1", "1.2.3"),
    C("format ipv6", S(format="ipv6"), "2001:db8::1", "xyz"),
    C("min/max int", {"type": "integer", "minimum": 1, "maximum": 10}, 7, 11),
    C("min/max number", {"type": "number", "minimum": -1.5, "maximum": 2.5}, 0.25, 3),
    C("exclusiveMin/Max", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, 0.5, 0),
    C("multipleOf int", {"type": "integer", "multipleOf": 5}, 35, 7),
    C("multipleOf 0.5", {"type": "number", "multipleOf": 0.5}, 2.5, 2.25),
    C("minItems/maxItems", {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3}, [1, 2], [1]),
    C("minLength/maxLength", S(minLength=3, maxLength=5), "abcd", "ab"),
    C("descriptions/titles", {"title": "T", "description": "d", **O(a=S(description="x"))}, {"a": "y"}, {"a": 1}),
    C("array enum minItems", {"type": "array", "items": {"enum": ["x", "y"]}, "minItems": 1}, ["x", "y"], []),
    C("unicode+escapes", S(), 'héllo 世界 ✓ "q" \\ \n\t', NO),
    C("24 properties", BIG, BIG_DOC, {**BIG_DOC, "field_1": "x"}, raw=True),
    C("person (nested mix)", PERSON, PERSON_DOC, {**PERSON_DOC, "role": "root"}, raw=True),
    C("X allOf", {"allOf": [O(a=S())]}, {"a": "x"}, {"a": 1}),
    C("X not", {"not": {"type": "string"}}, 1, "s"),
    C("X if/then/else", {"type": "integer", "if": {"minimum": 5}, "then": {"multipleOf": 5}}, 10, 6),
    C("X uniqueItems", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, [1, 2], [1, 1]),
    C(
        "X patternProperties",
        {"type": "object", "patternProperties": {"^n_": {"type": "integer"}}, "additionalProperties": False},
        {"n_a": 1},
        {"n_a": "s"},
    ),
    C("X minProperties", {"type": "object", "minProperties": 2}, {"a": 1, "b": 2}, {"a": 1}),
    C("X lookahead pattern", S(pattern=r"^(?=.*\d)\w+$"), "a1", "ab"),
    C("json_object mode", {"type": "object"}, ANYOBJ_DOC, ["not", "an", "object"], raw=True),
]


class LLG:
    name = "llguidance"

    def __init__(s, tj, threads, _=False):
        s.tok = llg.LLTokenizer(tj, n_vocab=V, eos_token=EOS)
        s.ex = llg.LLExecutor(num_threads=threads)

    def compile(s, schema):  # -> compiled (a template matcher), raises on error
        m = llg.LLMatcher(s.tok, llg.LLMatcher.grammar_from_json_schema(schema), log_level=0)
        if m.is_error():
            raise ValueError(m.get_error())
        return m

    def matcher(s, c):
        return c.deep_copy()

    def fill(s, m, bm, i=0):
        lnp.fill_next_token_bitmask(m, bm, i)

    def batch_fill(s, ms, bm):
        lnp.fill_next_token_bitmask_par(s.ex, [(m, i) for i, m in enumerate(ms)], bm)

    def consume(s, m, t):
        return m.consume_token(t)

    def accepting(s, m):
        return m.is_accepting()

    def own_apply(s, lg, bm):
        lnp.apply_token_bitmask_inplace(lg, bm)


class XGR:
    name = "xgrammar"

    def __init__(s, tj, threads, blank_specials=False):
        t = Tokenizer.from_str(tj)
        enc = [""] * V
        for tokstr, i in t.get_vocab(with_added_tokens=True).items():
            enc[i] = tokstr
        if blank_specials:  # "" marks a token special for xgrammar: else <|im_start|> etc. are allowed inside strings
            for i, tt in t.get_added_tokens_decoder().items():
                enc[i] = "" if tt.special else enc[i]
        info = xgr.TokenizerInfo(
            enc, xgr.VocabType.BYTE_LEVEL, vocab_size=V, stop_token_ids=[EOS], add_prefix_space=False
        )
        s.comp = xgr.GrammarCompiler(info, max_threads=threads, cache_enabled=False)
        s.bgm = xgr.BatchGrammarMatcher(max_threads=threads)

    def compile(s, schema):
        return s.comp.compile_json_schema(schema)

    def matcher(s, c):
        return xgr.GrammarMatcher(c)

    def fill(s, m, bm, i=0):
        m.fill_next_token_bitmask(bm, i)

    def batch_fill(s, ms, bm):
        s.bgm.batch_fill_next_token_bitmask(ms, bm)

    def consume(s, m, t):
        return m.accept_token(t)

    def accepting(s, m):
        return m.is_completed()

    def own_apply(s, lg, bm):
        xgr.apply_token_bitmask_inplace(torch.from_numpy(lg), torch.from_numpy(bm))


def apply_np(logits, bm):  # shared apply: bit j of the mask -> token j; disallowed logits -> -inf
    bits = np.unpackbits(bm.view(np.uint8), axis=1, count=logits.shape[1], bitorder="little").view(np.bool_)
    np.copyto(logits, -np.inf, where=~bits)


def allowed(bm, row=0):
    return np.flatnonzero(np.unpackbits(bm[row].view(np.uint8), count=V, bitorder="little"))


def enc(tk, doc):
    return tk.encode(json.dumps(doc, ensure_ascii=False), add_special_tokens=False).ids


def pct(xs, p):
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]


def accepts(lib, c, toks):
    m = lib.matcher(c)
    return all(lib.consume(m, t) for t in toks) and lib.accepting(m)


def coverage(libs, tk):
    print(f"\n1+2. coverage and compile time ({len(CASES)} schemas; X = outside OpenAI's strict subset)")
    print(f"{'schema':22}" + "".join(f" | {l.name:>10} {'compile':>8} {'1st mask':>8}" for l in libs))
    bm, tot = np.zeros((1, V // 32), np.int32), {l.name: {} for l in libs}
    for name, schema, valid, invalid in CASES:
        row = f"{name:22}"
        for lib in libs:
            t0 = now()
            try:
                c = lib.compile(schema)
            except Exception as e:
                msg = str(e).strip().splitlines()[-1][:70]
                tot[lib.name].setdefault("REJECTED", []).append(f"{name}: {msg}")
                row += f" | {'REJECTED':>10} {(now() - t0) * 1e3:8.2f} {'':>8}"
                continue
            t1 = now()
            lib.fill(lib.matcher(c), bm)
            t2 = now()
            st = "ok" if accepts(lib, c, enc(tk, valid)) else "BAD-valid"
            if st == "ok" and invalid is not NO and accepts(lib, c, enc(tk, invalid)):
                st = "IGNORED"
            tot[lib.name].setdefault(st, []).append(name)
            tot[lib.name].setdefault("ms", []).append((t1 - t0) * 1e3)
            row += f" | {st:>10} {(t1 - t0) * 1e3:8.2f} {(t2 - t0) * 1e3:8.2f}"
        print(row)
    for lib in libs:
        d = tot[lib.name]
        ms = d.pop("ms")
        print(
            f"  {lib.name}: compile ms median {statistics.median(ms):.2f}, max {max(ms):.2f}; "
            + "; ".join(f"{k} {len(v)}" for k, v in d.items())
        )
        for k in ("REJECTED", "IGNORED", "BAD-valid"):
            for x in d.get(k, []):
                print(f"    {k}: {x}")


def per_token(libs, tk, step1, step8):
    print("\n3. per-token cost, us (mask fill + apply to float32 numpy logits; advance not timed)")
    docs = [
        ("person", PERSON, PERSON_DOC),
        ("recursive tree", TREE, TREE_DOC),
        ("json_object", {"type": "object"}, ANYOBJ_DOC),
        ("24 properties", BIG, BIG_DOC),
    ]
    print(
        f"{'schema':15} {'tokens':>6} | {'library':10} {'fill mean':>9} {'fill p95':>8} {'+apply mean':>11} {'+apply p95':>10} {'advance':>7} | "
        f"{'b8 serial':>9} {'b8 batchAPI':>11} | {'% step b1':>9} {'% step b8':>9}"
    )
    for dname, schema, doc in docs:
        toks = enc(tk, doc)
        for lib in libs:
            c = lib.compile(schema)
            m = lib.matcher(c)
            bm, lg, base = (
                np.zeros((1, V // 32), np.int32),
                np.zeros((1, V), np.float32),
                np.random.default_rng(0).standard_normal((1, V)).astype(np.float32),
            )
            fill, full, adv = [], [], []
            for t in toks:
                np.copyto(lg, base)
                t0 = now()
                lib.fill(m, bm)
                t1 = now()
                apply_np(lg, bm)
                t2 = now()
                ok = lib.consume(m, t)
                t3 = now()
                assert ok, (lib.name, dname, t)
                fill.append((t1 - t0) * 1e6)
                full.append((t2 - t0) * 1e6)
                adv.append((t3 - t2) * 1e6)
            b8 = {}
            for mode in ("serial", "batch"):
                ms = [lib.matcher(c) for _ in range(8)]
                bm8, lg8 = np.zeros((8, V // 32), np.int32), np.zeros((8, V), np.float32)
                ts = []
                for t in toks:
                    lg8[:] = base
                    t0 = now()
                    if mode == "batch":
                        lib.batch_fill(ms, bm8)
                    else:
                        for i, mm in enumerate(ms):
                            lib.fill(mm, bm8, i)
                    apply_np(lg8, bm8)
                    ts.append((now() - t0) * 1e6)
                    for mm in ms:
                        lib.consume(mm, t)
                b8[mode] = statistics.mean(ts)
            f, a = statistics.mean(fill), statistics.mean(full)
            print(
                f"{dname:15} {len(toks):6} | {lib.name:10} {f:9.1f} {pct(fill, 0.95):8.1f} {a:11.1f} {pct(full, 0.95):10.1f} {statistics.mean(adv):7.1f} | "
                f"{b8['serial']:9.0f} {b8['batch']:11.0f} | {100 * a / (step1 * 1e3):8.2f}% {100 * min(b8.values()) / (step8 * 1e3):8.2f}%"
            )
    print(
        f"  (one decode step of the fast engine: {step1} ms for 1 row, {step8} ms for 8 rows; b8 = 8 matchers, us per step incl. apply)"
    )
    bm = np.full((1, V // 32), -1, np.int32)
    bm[0, 100:] = 0
    base = np.random.default_rng(0).standard_normal((1, V)).astype(np.float32)
    for lib in libs + [None]:
        lg = base.copy()
        f = lib.own_apply if lib else apply_np
        t0 = now()
        for _ in range(200):
            f(lg, bm)
        print(
            f"  apply helper {(lib.name + ' own') if lib else 'shared numpy (used above)':26}: {(now() - t0) / 200 * 1e6:7.1f} us per row (sparse mask)"
        )


def random_walks(libs, tk, n, rng):
    print(
        f"\n4. random valid paths ({n} per schema, <=300 tokens; a random allowed token, 40% EOS when allowed, 30% a closing token)"
    )
    names = [
        "string",
        "enum mixed",
        "anyOf objects",
        "array of obj",
        "nullable obj",
        "recursive $defs",
        "pattern",
        "format uuid",
        "minItems/maxItems",
        "json_object mode",
    ]
    pw = json.loads(json.dumps(PERSON))
    del pw["properties"]["email"]
    pw["required"].remove("email")  # random emails rarely reach '@'
    cases = [c for c in CASES if c[0] in names] + [("person w/o email", pw, None, None)]
    lt = llg.LLTokenizer(tk.to_str(), n_vocab=V, eos_token=EOS)
    text = [lt.decode_bytes([i]) for i in range(V)]
    close = np.array([t.lstrip()[:1] in (b"}", b"]", b'"') for t in text])
    ws = np.array([t.strip() == b"" for t in text])
    specials = [i for i, t in tk.get_added_tokens_decoder().items() if t.special and i != EOS]
    print(
        f"{'schema':22}"
        + "".join(f" | {l.name:>10} {'valid':>5} {'unfin':>5} {'avg tok':>7} {'spec.steps':>10}" for l in libs)
    )
    for name, schema, _, _ in cases:
        row = f"{name:22}"
        for lib in libs:
            c = lib.compile(schema)
            good = unfinished = special = 0
            lens = []
            bm = np.zeros((1, V // 32), np.int32)
            for _ in range(n):
                m, out = lib.matcher(c), []
                for _ in range(300):
                    lib.fill(m, bm)
                    al = allowed(bm)
                    special += bool(np.isin(specials, al).any())
                    pool = al[~ws[al]] if (~ws[al]).any() and rng.random() < 0.97 else al
                    if EOS in al and rng.random() < 0.4:
                        t = EOS
                    elif close[al].any() and rng.random() < 0.3:
                        t = int(rng.choice(al[close[al]]))
                    else:
                        t = int(rng.choice(pool))
                    assert lib.consume(m, t), (lib.name, name, t)
                    if t == EOS:
                        break
                    out.append(t)
                else:
                    unfinished += 1
                    continue
                lens.append(len(out))
                s = tk.decode(out, skip_special_tokens=False)
                try:
                    jsonschema.validate(json.loads(s), schema, format_checker=jsonschema.FormatChecker())
                    good += 1
                except Exception as e:
                    print(f"    INVALID {lib.name} {name}: {s[:120]!r}: {str(e).splitlines()[0][:100]}")
            row += f" | {'':>10} {good:>2}/{n - unfinished:<2} {unfinished:5} {statistics.mean(lens or [0]):7.1f} {special:10}"
        print(row)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--xgr-blank-specials", action="store_true", help="mark special tokens for xgrammar (see XGR)")
    ap.add_argument("--step-ms", type=float, nargs=2, default=[9.1, 20.3], metavar=("B1", "B8"))
    a = ap.parse_args()
    path = a.tokenizer or find_tokenizer()
    tj = Path(path).read_text()
    tk = Tokenizer.from_str(tj)
    print(
        f"tokenizer {path} (vocab {tk.get_vocab_size()}); llguidance {llg.__version__}, xgrammar {version('xgrammar')}, numpy {np.__version__}, {a.threads} threads"
    )
    libs = []
    for cls in (LLG, XGR):
        t0 = now()
        libs.append(cls(tj, a.threads, a.xgr_blank_specials))
        dt = now() - t0
        libs[-1].compile({"type": "object"})  # warm-up, so the first row of the table is not the first call
        print(f"  {cls.name}: tokenizer info built once in {dt * 1e3:.0f} ms")
    coverage(libs, tk)
    per_token(libs, tk, *a.step_ms)
    random_walks(libs, tk, a.samples, np.random.default_rng(0))


if __name__ == "__main__":
    main()
