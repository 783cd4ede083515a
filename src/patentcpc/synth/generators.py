"""Synthetic patents per label: how many, from which prompt, by which generator.

A run has three parts:

1. **targets** (:func:`plan_targets`): how many synthetic documents each label gets: ``fill``
   (raise every label to ``k`` documents), ``budget`` (a fixed total, given to the rarest labels
   first: water-filling) or ``ratio`` (``ratio`` times each label's real count);
2. **prompts** (:func:`build_prompts`): ``label-description`` (the code's title and definition:
   its subclass title, class title and first main-group titles from the IPC scheme) or
   ``few-shot`` (real patents of the label as examples). ``remove_label=True`` is the
   instruction-level label removal: the instruction never names the code nor its title;
3. **generators**: :class:`HFGenerator` (a local Hugging Face causal LM, batched and seeded),
   :class:`OpenAIGenerator` (any OpenAI-compatible ``/v1/chat/completions`` endpoint: retries
   with backoff, a rate limit, concurrency, timeouts) and :func:`recombine` (no LLM: new texts from
   phrases and word n-grams of the label's real texts; never a real text verbatim).

Every row records ``generator``, ``model``, ``strategy``, ``template``, ``seed``,
``source_label`` and ``synthetic: true``; :func:`write_rows` writes CSV or JSON Lines atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from patentcpc.errors import ConfigError, PatentCPCError

log = logging.getLogger(__name__)

GENERATORS = ("recombine", "hf", "openai")
STRATEGIES = ("label-description", "few-shot")
TARGET_MODES = ("fill", "budget", "ratio")
FIELDS = ("title", "abstract", "claims")
ROW_META = ("synthetic", "generator", "model", "strategy", "template", "seed", "source_label",
            "prompt_names_label", "masked")

# --------------------------------------------------------------------------- text helpers

_WORD = re.compile(r"[a-z0-9]+")


def normalize_text(text: str) -> str:
    """Lower case, runs of non-alphanumerics as one space: the form exact duplicates are found in."""
    return " ".join(_WORD.findall(str(text).lower()))


def join_fields(parts: Mapping[str, str], fields: Sequence[str]) -> str:
    """The text view of a generated document (fields joined by a newline, as :mod:`patentcpc.data`)."""
    return "\n".join(parts[f] for f in fields if parts.get(f))


# --------------------------------------------------------------------------- label descriptions


@dataclass
class LabelInfo:
    code: str
    title: str = ""
    definition: str = ""


def label_infos(labels: Sequence[str], max_groups: int = 8) -> dict[str, LabelInfo]:
    """Title and definition of each subclass from the IPC scheme (``patentcpc[scheme]``); codes
    the scheme lacks (CPC-only, or no scheme installed) keep an empty title."""
    from patentcpc.scheme import iter_scheme

    wanted = {c[:4] for c in labels}
    titles: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    try:
        for code, text in iter_scheme("label descriptions"):
            if len(code) == 3 and any(w.startswith(code) for w in wanted) or len(code) == 4 and code in wanted:
                titles[code] = text
            elif len(code) == 14 and code[:4] in wanted and code.endswith("000000"):  # main groups
                g = groups.setdefault(code[:4], [])
                if len(g) < max_groups:
                    g.append(text)
    except PatentCPCError:
        log.warning("no IPC scheme installed: label descriptions are the codes alone")
    out = {}
    for c in labels:
        sub = c[:4]
        definition = "; ".join(p for p in [titles.get(sub[:3], "")] + groups.get(sub, []) if p)
        out[c] = LabelInfo(c, titles.get(sub, ""), definition)
    return out


def mask_label_names(text: str, info: LabelInfo) -> tuple[str, bool]:
    """Label-name masking: remove the code symbol and its title (whole, and each of its
    ``;``/``,``-separated segments of three words or more) from ``text``. Returns (text, changed)."""
    pats = [re.escape(info.code)]
    if info.title:
        segs = [info.title] + [s.strip() for s in re.split(r"[;,]", info.title)]
        pats += [re.escape(s) for s in sorted(set(segs), key=len, reverse=True) if len(s.split()) >= 3]
    rx = re.compile(r"\b(?:" + "|".join(pats) + r")\b", re.IGNORECASE)
    new = rx.sub(" ", text)
    new = re.sub(r"[ \t]+", " ", new).strip()
    return new, new != text.strip()


# --------------------------------------------------------------------------- targets


def plan_targets(counts: Mapping[str, int], mode: str = "fill", k: int = 5, budget: int | None = None,
                 ratio: float | None = None) -> dict[str, int]:
    """Synthetic documents per label. ``fill``: ``max(0, k - count)``; ``budget``: ``budget``
    documents, each to the label with the fewest (real + synthetic so far; ties by code);
    ``ratio``: ``round(ratio * count)``."""
    if mode not in TARGET_MODES:
        raise ConfigError(f"target mode must be one of {', '.join(TARGET_MODES)}, not '{mode}'")
    labels = sorted(counts)
    if mode == "fill":
        if k < 1:
            raise ConfigError(f"--k must be >= 1, not {k}")
        return {c: max(0, k - int(counts[c])) for c in labels}
    if mode == "ratio":
        if ratio is None or ratio < 0:
            raise ConfigError("--ratio must be given and >= 0")
        return {c: int(round(ratio * counts[c])) for c in labels}
    if budget is None or budget < 0:
        raise ConfigError("--budget must be given and >= 0")
    import heapq

    out = {c: 0 for c in labels}
    heap = [(int(counts[c]), c) for c in labels]
    heapq.heapify(heap)
    for _ in range(budget if heap else 0):  # water-filling, one document at a time
        n, c = heapq.heappop(heap)
        out[c] += 1
        heapq.heappush(heap, (n + 1, c))
    return out


# --------------------------------------------------------------------------- prompts


@dataclass
class Prompt:
    label: str
    strategy: str
    template: str
    messages: list[dict]
    names_label: bool
    seed: int


SYSTEM = "You write realistic patent documents in the style of granted US patents."
TEMPLATES = {
    "label-description": (
        "Write one new, realistic patent {what} in {field}.{definition}\n"
        "Answer only in this format:\n{format}"),
    "few-shot": (
        "Here are patents from {field}:\n\n{examples}\n\n"
        "Write one new, different patent in the same field. Do not copy the examples.\n"
        "Answer only in this format:\n{format}"),
}


def _what(fields: Sequence[str]) -> str:
    names = list(fields)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def split_view(text: str, fields: Sequence[str]) -> dict[str, str]:
    """A real text view back into fields: first line the title, the rest the abstract (claims
    are not recovered)."""
    first, _, rest = str(text).strip().partition("\n")
    parts = {"title": first.strip()}
    if "abstract" in fields and rest.strip():
        parts["abstract"] = rest.strip()
    return parts


def _format(fields: Sequence[str], parts: Mapping[str, str] | None = None) -> str:
    return "\n".join(f"{f.capitalize()}: {(parts or {}).get(f, '...')}" for f in fields
                     if parts is None or parts.get(f))


def build_prompts(label: str, n: int, strategy: str, info: LabelInfo, examples: Sequence[str], seed: int,
                  fields: Sequence[str] = ("title", "abstract"), shots: int = 3,
                  remove_label: bool = False) -> list[Prompt]:
    """``n`` chat prompts for ``label``. Few-shot prompts show ``shots`` real ``examples`` of the
    label (a seeded sample per prompt); ``remove_label`` leaves the code and its title out of the
    instruction."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, not '{strategy}'")
    if strategy == "few-shot" and not examples:
        raise ConfigError(f"few-shot prompts need real examples of label {label}")
    rng = random.Random(f"{seed}:{label}:prompts")
    named = f"CPC subclass {info.code}" + (f" ({info.title})" if info.title else "")
    field_text = "the technical field described below" if remove_label else named
    out = []
    for i in range(n):
        if strategy == "label-description":
            definition = f"\nThe field covers: {info.definition}." if info.definition else ""
            if not definition and remove_label:
                field_text = "an unspecified technical field"
            user = TEMPLATES[strategy].format(what=_what(fields), field=field_text, definition=definition,
                                              format=_format(fields))
        else:
            picked = rng.sample(list(examples), min(shots, len(examples)))
            ex = "\n\n---\n\n".join(_format(fields, split_view(t, fields)) for t in picked)
            field_text = "one technical field" if remove_label else named
            user = TEMPLATES[strategy].format(field=field_text, examples=ex, format=_format(fields))
        out.append(Prompt(label, strategy, strategy + ("/no-label" if remove_label else ""),
                          [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
                          not remove_label, seed + i))
    return out


def parse_generation(text: str, fields: Sequence[str] = ("title", "abstract")) -> dict[str, str] | None:
    """``Title: ... Abstract: ... Claims: ...`` out of a completion (else: first line the title,
    the rest the abstract); None when nothing usable came back."""
    text = str(text or "").strip()
    if not text:
        return None
    marks = list(re.finditer(r"(?im)^\s*[*#_]*\s*(title|abstract|claims?)\s*[*_]*\s*:\s*[*_]*\s*", text))
    parts: dict[str, str] = {}
    if marks:
        for m, nxt in zip(marks, marks[1:] + [None], strict=True):
            key = m.group(1).lower()
            key = "claims" if key.startswith("claim") else key
            body = text[m.end(): nxt.start() if nxt else len(text)].strip()
            if body and key not in parts:
                parts[key] = body
    else:
        first, _, rest = text.partition("\n")
        parts = {"title": first.strip(), "abstract": rest.strip()}
    parts = {k: " ".join(v.split()) if k == "title" else v.strip() for k, v in parts.items() if v.strip()}
    parts = {k: v for k, v in parts.items() if k in fields}
    return parts or None


# --------------------------------------------------------------------------- generators


class HFGenerator:
    """A local Hugging Face causal LM (folder or hub id), sampling in batches with a fixed seed
    per batch (so a run is reproducible on the same machine)."""

    name = "hf"

    def __init__(self, model: str, batch_size: int = 8, max_new_tokens: int = 200, temperature: float = 0.9,
                 top_p: float = 0.95, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise PatentCPCError(f"--hf-model {model}: cannot load ({str(exc).splitlines()[0]})") from None
        self.model_name = str(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.sep_token
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.temperature, self.top_p = temperature, top_p

    def _render(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\nTitle:"

    def complete(self, prompts: Sequence[Prompt]) -> list[str | None]:
        import torch

        out: list[str | None] = []
        eos = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.sep_token_id
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start: start + self.batch_size]
            enc = self.tokenizer([self._render(p.messages) for p in batch], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            torch.manual_seed(batch[0].seed)
            with torch.inference_mode():
                gen = self.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                          do_sample=True, temperature=self.temperature, top_p=self.top_p,
                                          max_new_tokens=self.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=eos)
            new = gen[:, enc["input_ids"].shape[1]:]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            # a prompt without a chat template ends in "Title:": the completion continues the title
            prefix = "" if getattr(self.tokenizer, "chat_template", None) else "Title: "
            out.extend(prefix + t for t in texts)
        return out


RETRY_STATUS = (408, 409, 425, 429, 500, 502, 503, 504)
# the most of an answer that is read (a chat completion of a few hundred tokens is a few KiB)
MAX_RESPONSE_BYTES = 8 << 20


class _TooLarge(Exception):
    pass


@dataclass
class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint: ``POST {base_url}/chat/completions`` (``base_url``
    ends in ``/v1``; a bare host gets ``/v1``). The key comes from ``OPENAI_API_KEY`` (optional
    for local servers). Retries 408/409/425/429/5xx, timeouts and connection errors with
    exponential backoff (``Retry-After`` honoured, capped at ``max_backoff``); ``rate_limit``
    requests per second at most; ``concurrency`` requests in flight. ``timeout`` is the deadline of
    each whole request (connecting, sending and reading the whole answer: a server that drips bytes
    times out like one that says nothing); an answer over :data:`MAX_RESPONSE_BYTES` is refused."""

    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 4
    rate_limit: float | None = None
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 30.0
    temperature: float = 0.9
    max_tokens: int = 400
    stats: Counter = field(default_factory=Counter)
    name = "openai"

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get("OPENAI_API_KEY")
        url = self.base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--base-url must start with http:// or https://, not '{self.base_url}'")
        if not url.endswith("/v1"):
            url += "/v1"
        self.url = url + "/chat/completions"
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout <= 0:
            raise ConfigError("--concurrency must be >= 1, --max-retries >= 0 and --timeout > 0")
        self.model_name = self.model

    def complete(self, prompts: Sequence[Prompt]) -> list[str | None]:
        return asyncio.run(self._complete_all(prompts))

    async def _complete_all(self, prompts: Sequence[Prompt]) -> list[str | None]:
        import httpx

        sem = asyncio.Semaphore(self.concurrency)
        lock = asyncio.Lock()
        next_slot = [time.monotonic()]
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

        async def throttle() -> None:
            if not self.rate_limit:
                return
            async with lock:
                now = time.monotonic()
                wait = next_slot[0] - now
                next_slot[0] = max(now, next_slot[0]) + 1.0 / self.rate_limit
            if wait > 0:
                await asyncio.sleep(wait)

        async def post(client, payload: dict, answered: list[bool]) -> tuple[int, object, bytes]:
            """(status, headers, body) of one request; the body read up to MAX_RESPONSE_BYTES.
            ``answered[0]`` becomes True once the server's status line and headers have arrived."""
            async with client.stream("POST", self.url, json=payload, headers=headers) as r:
                answered[0] = True
                declared = r.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise _TooLarge
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _TooLarge
                return r.status_code, r.headers, bytes(body)

        async def one(client, p: Prompt) -> str | None:
            payload = {"model": self.model, "messages": p.messages, "temperature": self.temperature,
                       "max_tokens": self.max_tokens, "seed": p.seed}
            last = ""
            for attempt in range(self.max_retries + 1):
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
                async with sem:
                    await throttle()
                    self.stats["requests"] += 1
                    r = None
                    answered = [False]
                    try:  # the whole request within --timeout, however the server paces its bytes
                        r = await asyncio.wait_for(post(client, payload, answered), self.timeout)
                    except (httpx.TimeoutException, asyncio.TimeoutError):
                        self.stats["timeouts"] += 1
                        if answered[0]:  # it answered but sends its body too slowly: a retry would too
                            raise PatentCPCError(f"{self.url}: the answer did not arrive within --timeout "
                                                 f"{self.timeout:g}s (the server sends it too slowly); "
                                                 "not retried") from None
                        last = f"timed out after {self.timeout:g}s"
                    except httpx.TransportError as exc:
                        self.stats["connection_errors"] += 1
                        last = f"connection failed ({type(exc).__name__})"
                    except _TooLarge:
                        raise PatentCPCError(f"{self.url}: the answer is larger than {MAX_RESPONSE_BYTES >> 20} "
                                             "MiB; refused") from None
                    except httpx.HTTPError as exc:  # an undecodable body, an invalid URL, ...
                        raise PatentCPCError(f"{self.url}: {type(exc).__name__}: "
                                             f"{(str(exc).splitlines() or [''])[0][:200]}") from None
                if r is not None:
                    status, answer_headers, body = r
                    text = body.decode("utf-8", errors="replace")
                    if status == 200:
                        try:
                            content = json.loads(body)["choices"][0]["message"]["content"]
                            if content is None or isinstance(content, str):
                                return content
                            raise TypeError("content is not a string")
                        except (ValueError, KeyError, IndexError, TypeError, RecursionError):
                            raise PatentCPCError(f"{self.url}: the answer is not a chat completion: "
                                                 f"{' '.join(text[:200].split())}") from None
                    self.stats[f"http_{status}"] += 1
                    last = f"HTTP {status}: {' '.join(text[:200].split())}"
                    if status not in RETRY_STATUS:
                        raise PatentCPCError(f"{self.url}: {last}")
                    ra = answer_headers.get("retry-after")
                    if ra:
                        with contextlib.suppress(ValueError):
                            delay = min(self.max_backoff, max(0.0, float(ra)))
                if attempt < self.max_retries:
                    self.stats["retries"] += 1
                    await asyncio.sleep(delay)
            raise PatentCPCError(f"{self.url}: gave up after {self.max_retries + 1} tries: {last}")

        async with httpx.AsyncClient(timeout=self.timeout) as client:
            tasks = [asyncio.ensure_future(one(client, p)) for p in prompts]
            if not tasks:
                return []
            try:  # the first failure stops the other requests (no stray task outlives the client)
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for t in tasks:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()
            return [t.result() for t in tasks]


# --------------------------------------------------------------------------- recombine (no LLM)

_CONNECTORS = {"for", "with", "and", "of", "in", "on", "using", "having", "comprising", "from", "to", "by",
               "which", "that", "including", "via", "based", "wherein", "at", "into", "or"}
_TOKEN = re.compile(r"[\w\-/']+|[.,;:()]")


def _phrases(text: str) -> list[list[str]]:
    """Word phrases: a connector word starts a new phrase, punctuation ends one."""
    phrases: list[list[str]] = [[]]
    for tok in _TOKEN.findall(text):
        if tok in ".,;:()":
            if phrases[-1]:
                phrases.append([])
            continue
        if tok.lower() in _CONNECTORS and phrases[-1]:
            phrases.append([])
        phrases[-1].append(tok)
    return [p for p in phrases if p]


def _detok(words: Sequence[str]) -> str:
    s = " ".join(words)
    return s[:1].upper() + s[1:]


def _markov(texts: Sequence[str], rng: random.Random, max_len: int) -> list[str]:
    chain: dict[tuple[str, str], list[str]] = {}
    for t in texts:
        w = ["<s>", "<s>"] + [x for x in _TOKEN.findall(t) if x not in "()"] + ["</s>"]
        for a, b, c in zip(w, w[1:], w[2:], strict=False):
            chain.setdefault((a.lower(), b.lower()), []).append(c)
    out, state = [], ("<s>", "<s>")
    while len(out) < max_len:
        nxt = rng.choice(chain.get(state, ["</s>"]))
        if nxt == "</s>":
            break
        out.append(nxt)
        state = (state[1], nxt.lower())
    return out


def recombine(label: str, texts: Sequence[str], n: int, seed: int, forbidden: set[str],
              max_tries: int = 60) -> list[tuple[str, str]]:
    """Up to ``n`` new texts for ``label`` from its real ``texts``: ``phrase-splice`` (the first
    phrase of one text, then phrases of other texts of the label) or ``ngram-markov`` (a walk on
    the label's word-trigram chain). A candidate whose normalized form is in ``forbidden`` (the
    real texts) or was already made is dropped; a label whose texts allow nothing new gets fewer.
    Returns (text, template) pairs."""
    texts = [t for t in texts if str(t).strip()]
    if not texts or n <= 0:
        return []
    rng = random.Random(f"{seed}:{label}:recombine")
    split = [_phrases(t) for t in texts]
    firsts = [p[0] for p in split if p]
    rest = [q for p in split for q in p[1:]]
    lengths = [len(p) for p in split if p]
    pool = list(dict.fromkeys(tuple(q) for q in rest))
    max_words = max(len(_TOKEN.findall(t)) for t in texts)
    made: set[str] = set()
    out: list[tuple[str, str]] = []
    tries = 0
    while len(out) < n and tries < max_tries * n:
        tries += 1
        if rest and rng.random() < 0.6:
            k = max(2, rng.choice(lengths))
            words = list(rng.choice(firsts))
            picked = [q for q in rng.sample(pool, min(k, len(pool))) if list(q) != words][: k - 1]
            for q in picked:
                words += q
            template = "phrase-splice"
        else:
            words = _markov(texts, rng, int(max_words * 1.5) + 2)
            template = "ngram-markov"
        text = _detok(words)
        key = normalize_text(text)
        if len(key.split()) < 2 or key in forbidden or key in made:
            continue
        made.add(key)
        out.append((text, template))
    return out


# --------------------------------------------------------------------------- a whole run


@dataclass
class GenerateOptions:
    generator: str = "recombine"
    strategy: str = "few-shot"
    target: str = "fill"
    k: int = 5
    budget: int | None = None
    ratio: float | None = None
    labels: list[str] | None = None  # restrict to these labels
    seed: int = 0
    fields: tuple[str, ...] = ("title", "abstract")
    shots: int = 3
    remove_label: bool = False
    mask_labels: bool = False


def generate_synthetic(texts: Sequence[str], labels: Sequence[Sequence[str]], options: GenerateOptions,
                       generator=None, infos: Mapping[str, LabelInfo] | None = None) -> tuple[list[dict], dict]:
    """Synthetic rows for the labels of the real (``texts``, ``labels``) per ``options``; the LLM
    ``generator`` (:class:`HFGenerator` / :class:`OpenAIGenerator`) unless ``recombine``.
    Returns (rows, summary)."""
    if options.generator not in GENERATORS:
        raise ConfigError(f"--generator must be one of {', '.join(GENERATORS)}, not '{options.generator}'")
    bad = [f for f in options.fields if f not in FIELDS]
    if bad or not options.fields or options.fields[0] != "title":
        raise ConfigError(f"--fields must start with title and use only {', '.join(FIELDS)}")
    by_label: dict[str, list[str]] = {}
    for t, ls in zip(texts, labels, strict=True):
        for c in ls:
            by_label.setdefault(c, []).append(t)
    counts = {c: len(v) for c, v in by_label.items()}
    if options.labels:
        unknown = [c for c in options.labels if c not in counts]
        counts = {c: counts.get(c, 0) for c in options.labels}
        if unknown and options.strategy == "few-shot":
            raise ConfigError(f"--labels: no real documents for {', '.join(unknown[:5])} (few-shot needs them)")
    targets = plan_targets(counts, options.target, options.k, options.budget, options.ratio)
    todo = {c: n for c, n in targets.items() if n > 0}
    if infos is None and (options.mask_labels or options.generator != "recombine"):
        infos = label_infos(sorted(todo))
    infos = dict(infos or {})
    rows: list[dict] = []
    failed = 0
    model_name = getattr(generator, "model_name", None)
    if options.generator == "recombine":
        forbidden = {normalize_text(t) for t in texts}
        for c in sorted(todo):
            for i, (text, template) in enumerate(recombine(c, by_label.get(c, []), todo[c], options.seed,
                                                           forbidden)):
                rows.append(_row(text, split_view(text, options.fields), c, "recombine", None, "real-phrases",
                                 template, options.seed + i, False))
    else:
        if generator is None:
            raise ConfigError(f"generator '{options.generator}' needs a model")
        prompts = [p for c in sorted(todo)
                   for p in build_prompts(c, todo[c], options.strategy, infos.get(c, LabelInfo(c)),
                                          by_label.get(c, []), options.seed, options.fields, options.shots,
                                          options.remove_label)]
        completions = generator.complete(prompts)
        for p, comp in zip(prompts, completions, strict=True):
            parts = parse_generation(comp or "", options.fields)
            if not parts or "title" not in parts:
                failed += 1
                continue
            rows.append(_row(join_fields(parts, options.fields), parts, p.label, options.generator, model_name,
                             p.strategy, p.template, p.seed, p.names_label))
    if options.mask_labels:
        for r in rows:
            info = infos.get(r["source_label"], LabelInfo(r["source_label"]))
            r["text"], r["masked"] = mask_label_names(r["text"], info)
            for f in options.fields:
                if r.get(f):
                    r[f] = mask_label_names(r[f], info)[0]
    made = Counter(r["source_label"] for r in rows)
    summary = {"generator": options.generator, "model": model_name, "strategy": options.strategy,
               "target": options.target, "seed": options.seed, "n_labels_targeted": len(todo),
               "n_requested": sum(todo.values()), "n_generated": len(rows), "n_unparseable": failed,
               "short_labels": {c: todo[c] - made.get(c, 0) for c in sorted(todo) if made.get(c, 0) < todo[c]},
               "stats": dict(getattr(generator, "stats", {}) or {})}
    return rows, summary


def _row(text: str, parts: Mapping[str, str], label: str, generator: str, model: str | None, strategy: str,
         template: str, seed: int, names_label: bool) -> dict:
    row = {"text": text, "title": parts.get("title", ""), "abstract": parts.get("abstract", ""),
           "claims": parts.get("claims", ""), "cpc_ids": label}
    row.update({"synthetic": True, "generator": generator, "model": model or "", "strategy": strategy,
                "template": template, "seed": seed, "source_label": label, "prompt_names_label": names_label,
                "masked": False})
    return row


# --------------------------------------------------------------------------- files


def write_rows(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """CSV (``.csv``) or JSON Lines (``.jsonl``), written atomically."""
    from patentcpc.models.artifact import atomic_write_text

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ConfigError(f"{path}: write synthetic data as .csv or .jsonl, not '{path.suffix or '(none)'}'")
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        cols = list(rows[0]) if rows else ["text", "cpc_ids", *ROW_META]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    atomic_write_text(path, text)
    return path


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows written by :func:`write_rows` (``synthetic`` back to a bool)."""
    from patentcpc.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    rows: list[dict] = []
    with open(path, encoding="utf-8", newline="") as fh:
        if path.suffix.lower() == ".jsonl":
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(path, f"not JSON ({exc.msg})", row=n) from None
        else:
            rows = list(csv.DictReader(fh))
    for n, r in enumerate(rows, 1):
        if not str(r.get("text", "")).strip() or not r.get("source_label"):
            raise DataError(path, "a synthetic row needs text and source_label", row=n)
        if isinstance(r.get("synthetic"), str):
            r["synthetic"] = r["synthetic"].lower() == "true"
    return rows


def make_generator(name: str, hf_model: str | None = None, base_url: str | None = None,
                   api_model: str | None = None, **kwargs):
    """The LLM generator object for ``name`` (None for ``recombine``). ``kwargs`` go to its
    constructor (unknown ones for that generator are ignored)."""
    import inspect

    if name not in GENERATORS:
        raise ConfigError(f"--generator must be one of {', '.join(GENERATORS)}, not '{name}'")
    if name == "recombine":
        return None
    cls = HFGenerator if name == "hf" else OpenAIGenerator
    accepted = set(inspect.signature(cls).parameters)
    kw = {k: v for k, v in kwargs.items() if k in accepted and v is not None}
    if name == "hf":
        if not hf_model:
            raise ConfigError("--generator hf needs --hf-model PATH_OR_ID")
        return HFGenerator(hf_model, **kw)
    if not base_url or not api_model:
        raise ConfigError("--generator openai needs --base-url URL and --api-model NAME")
    return OpenAIGenerator(base_url, api_model, **kw)
