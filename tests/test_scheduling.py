"""Scheduling on local models: batches by count or token budget, prefetching, refill and the static
cache give the answers one-at-a-time runs give, on tiny fp32 models of every family, with mixed image
sizes and answer lengths pinned per request (each request's own token budget, end tokens held off)."""
import logging
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vlground.core.families import get_family
from vlground.models.base import Request
from vlground.models.hf import HFBackend, set_pixel_limits
from vlground.models.qwen_vl.backend import NativeRows, QwenVLBackend
from vlground.models.scheduling import padding_share, plan_batches, prefetched
from vlground.core.options import GenerationOptions, OptionsError
from vlground.prompts import build_prompt
from vlground.testing.hf import TINY_FAMILIES
from vlground.testing.qwen_vl import make_tiny_qwen_vl

PINNED = 10_000  # min_new_tokens above every budget: each answer runs exactly its own budget


def images(count, seed=0, low=50, high=330):
    rng = np.random.default_rng(seed)
    sizes = [(int(rng.integers(low, high)), int(rng.integers(low, high))) for _ in range(count)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def varied_requests(family, pictures, lengths):
    """Requests over `pictures` whose answers may run `lengths[i]` tokens, with three prompt kinds."""
    kinds = [lambda n: build_prompt("ground", family, phrase="the red car", max_new_tokens=n),
             lambda n: build_prompt("read_text", family, max_new_tokens=n),
             lambda n: build_prompt("ask", family, question="What colour is the sky?", max_new_tokens=n)]
    return [Request(image, kinds[i % 3](n)) for i, (image, n) in enumerate(zip(pictures, lengths))]


def engine_spy(backend, monkeypatch):
    """The row engines `backend` builds for refill, as built."""
    engines = []
    build = backend._row_engine

    def spy(*args, **kwargs):
        engines.append(build(*args, **kwargs))
        return engines[-1]

    monkeypatch.setattr(backend, "_row_engine", spy)
    return engines


def static_cache_spy(monkeypatch):
    """One entry per transformers StaticCache built from now on."""
    from transformers import StaticCache

    built = []
    init = StaticCache.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        init(self, *args, **kwargs)

    monkeypatch.setattr(StaticCache, "__init__", counted)
    return built


# -- planning ----------------------------------------------------------------------------------------

def test_count_batches_group_similar_costs_in_a_stable_order():
    assert plan_batches([500, 10, 400, 20, 300, 10], 2) == [[1, 5], [3, 4], [2, 0]]


def test_token_budget_batches_stay_under_the_budget_and_batch_size_stays_the_cap():
    costs = [100, 900, 120, 110, 800, 95, 2000, 105]
    batches = plan_batches(costs, batch_size=3, token_budget=1000)
    assert sorted(i for b in batches for i in b) == list(range(len(costs)))
    assert all(len(b) <= 3 for b in batches)
    assert all(len(b) * max(costs[i] for i in b) <= 1000 for b in batches if len(b) > 1)
    assert [6] in batches  # dearer than the budget: alone, never dropped
    assert [5, 0, 7] in batches  # small ones fill a batch up to the cap


def all_partitions(items):
    if not items:
        yield []
        return
    for rest in all_partitions(items[1:]):
        yield [[items[0]]] + rest
        for k in range(len(rest)):
            yield rest[:k] + [[items[0]] + rest[k]] + rest[k + 1:]


def test_batches_are_the_fewest_possible_and_of_those_the_least_padded():
    """Against every way of splitting small random workloads (cap and budget kept, a request dearer
    than the budget alone): first fewest batches, then fewest padded prompt tokens. Filling batches
    in turn fails here, e.g. costs 10, 20, 30, 30 at three rows: [10 20 30] [30] pads 30 more tokens
    than [10 20] [30 30]."""
    def allowed(batch, costs, cap, budget):
        return len(batch) == 1 or (len(batch) <= cap and (budget is None or len(batch) * max(costs[i] for i in batch) <= budget))

    def score(plan, costs):
        return len(plan), sum(len(b) * max(costs[i] for i in b) for b in plan)

    rng = np.random.default_rng(0)
    for _ in range(200):
        costs = rng.integers(1, 50, int(rng.integers(1, 8))).tolist()
        cap, budget = int(rng.integers(1, 5)), [None, int(rng.integers(20, 150))][int(rng.integers(0, 2))]
        plan = plan_batches(costs, cap, budget)
        assert sorted(i for b in plan for i in b) == list(range(len(costs)))
        assert all(allowed(b, costs, cap, budget) for b in plan)
        best = min(score(p, costs) for p in all_partitions(list(range(len(costs))))
                   if all(allowed(b, costs, cap, budget) for b in p))
        assert score(plan, costs) == best, (costs, cap, budget, plan)


def test_padding_share_counts_rows_padded_to_their_batch_longest():
    assert padding_share([[0, 1], [2]], [10, 30, 5]) == pytest.approx(20 / 65)
    assert padding_share([[0], [1]], [10, 30]) == 0


def test_token_budget_must_be_positive_and_refill_takes_no_static_cache():
    with pytest.raises(OptionsError, match="token_budget"):
        GenerationOptions(token_budget=0)
    with pytest.raises(OptionsError, match="refill and static_cache do not combine"):
        GenerationOptions(refill=True, static_cache=True)


def test_prefetched_prepares_the_next_item_in_another_thread_while_the_current_one_is_used():
    started, threads = [], set()

    def prepare(item):
        started.append(item)
        threads.add(threading.current_thread().name)
        return item * 10

    out = []
    for value in prefetched(prepare, range(4)):
        deadline = time.monotonic() + 5
        while len(started) < min(value // 10 + 2, 4) and time.monotonic() < deadline:
            time.sleep(0.01)  # the next item is prepared while this one is in use
        out.append((value, len(started)))
    assert [v for v, _ in out] == [0, 10, 20, 30]
    assert [n for _, n in out] == [2, 3, 4, 4]
    assert threads and threading.current_thread().name not in threads
    assert list(prefetched(prepare, [1, 2], enabled=False)) == [10, 20]


# -- transformers families ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf(tiny_checkpoint):
    return {name: HFBackend.load(tiny_checkpoint(name), get_family(name), device="cpu") for name in TINY_FAMILIES}


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_hf_costs_are_the_prompt_tokens_the_processor_produces(hf, name):
    backend = hf[name]
    requests = varied_requests(name, images(4, seed=3, low=40, high=700), [4] * 4)
    expected = [backend._encode([r])[0]["input_ids"].shape[1] for r in requests]
    assert backend._costs(requests, GenerationOptions(thinking="off")) == expected and len(set(expected)) > 2
    size = dict(backend.processor.image_processor.size)
    try:  # the processor's own pixel bounds, not a guess
        set_pixel_limits(backend.processor, max_pixels=size["shortest_edge"] * 2)
        assert backend._costs(requests, GenerationOptions(thinking="off")) == [backend._encode([r])[0]["input_ids"].shape[1] for r in requests]
        assert backend._costs(requests, GenerationOptions(thinking="off")) != expected
    finally:
        backend.processor.image_processor.size = size


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_hf_chat_text_has_transformers_warn_about_nothing(hf, name, caplog):
    """enable_thinking reaches only templates that have the switch: any other gets it as a processor
    argument, and transformers warns about that on every request."""
    backend = hf[name]
    request = varied_requests(name, images(1), [4])[0]
    library = logging.getLogger("transformers")  # its records do not reach the root logger
    # at its own level: an in-process CLI run earlier in the session (quiet_libraries) set it to errors
    # only, which made this test pass after any CLI test whatever the backend did
    level = library.level
    library.addHandler(caplog.handler)
    library.setLevel(logging.WARNING)
    try:
        for thinking in (False, True):
            backend._chat_text(request, thinking)
    finally:
        library.removeHandler(caplog.handler)
        library.setLevel(level)
    assert "processor_kwargs" not in caplog.text


SCHEDULES = {
    "refill": dict(batch_size=3, refill=True),
    "refill+budget+prefetch": dict(batch_size=4, refill=True, token_budget=300, prefetch=True),
    "budget+prefetch": dict(batch_size=4, token_budget=300, prefetch=True),
    "static cache": dict(batch_size=3, static_cache=True),
}


# Families whose cache refill cannot join (linear-attention layers): they must still answer the same,
# through plain batches, and say why.
NO_REFILL = {"qwen3.5", "qwen3.5-moe", "qwen4-exp"}


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_hf_schedules_answer_as_one_at_a_time(hf, name, monkeypatch, caplog):
    backend = hf[name]
    lengths = [3, 17, 6, 11, 2, 14, 8]
    requests = varied_requests(name, images(7, seed=1), lengths)
    for pinned in (PINNED, 0):  # lengths pinned per request, then the model's own ends
        options = dict(min_new_tokens=pinned, thinking="off")
        alone = [backend.generate([r], GenerationOptions(batch_size=1, **options))[0] for r in requests]
        engines = engine_spy(backend, monkeypatch)
        static_caches = static_cache_spy(monkeypatch)
        for schedule, settings in SCHEDULES.items():
            before = len(static_caches)
            with caplog.at_level(logging.WARNING, logger="vlground"):
                answers = backend.generate(requests, GenerationOptions(**settings, **options))
            assert answers == alone, (schedule, pinned)
            assert (len(static_caches) > before) == ("static_cache" in settings), schedule  # the static path ran
        if name in NO_REFILL:
            assert engines == [None, None] and "refill is off" in caplog.text
        elif pinned:  # each answer ran exactly its own budget
            assert engines[0].stats.useful_tokens == sum(lengths)
        monkeypatch.undo()


def test_hf_refill_keeps_rows_full_where_plain_batches_idle(hf, monkeypatch):
    backend = hf["qwen2.5-vl"]
    lengths = [2, 20, 2, 2, 2, 2, 2, 20]
    requests = varied_requests("qwen2.5-vl", images(8, seed=2), lengths)
    engines = engine_spy(backend, monkeypatch)
    backend.generate(requests, GenerationOptions(batch_size=2, refill=True, min_new_tokens=PINNED))
    stats = engines[0].stats
    # a row leaves as its answer ends and the next request takes its place: nothing computed in vain
    # (plain batches of 2 compute 2 x 20 rows x tokens for each batch holding a 20-token answer)
    assert stats.useful_tokens == stats.row_steps == sum(lengths)


REFILL_FAMILIES = [name for name in TINY_FAMILIES if name not in NO_REFILL]


@pytest.mark.parametrize("name", REFILL_FAMILIES)
def test_hf_refill_logits_equal_one_at_a_time(hf, name, monkeypatch):
    """Each row's logits at every step, not only its argmax, equal the model's own `generate` on the
    request alone. A tiny random model's argmax barely depends on positions: rows given each other's
    positions (a few dozen apart) still pick the same tokens, but not the same logits."""
    from vlground.models.hf_refill import HFRows

    backend = hf[name]
    lengths = [3, 17, 6, 11, 2, 14, 8]
    requests = varied_requests(name, images(7, seed=1), lengths)
    seen: dict[int, list[torch.Tensor]] = {}
    join, step = HFRows.join, HFRows.step

    def joined(self, indices, prepared):
        logits = join(self, indices, prepared)
        for index, row in zip(indices, logits):
            seen.setdefault(index, []).append(row.clone())
        return logits

    def stepped(self, tokens):
        rows, logits = list(self.rows), step(self, tokens)
        for index, row in zip(rows, logits):
            seen[index].append(row.clone())
        return logits

    monkeypatch.setattr(HFRows, "join", joined)
    monkeypatch.setattr(HFRows, "step", stepped)
    options = GenerationOptions(batch_size=3, refill=True, min_new_tokens=PINNED, thinking="off")
    backend.generate(requests, options)
    assert sorted(seen) == list(range(len(requests)))
    for index, (request, length) in enumerate(zip(requests, lengths)):
        inputs, _ = backend._encode([request])
        config = backend._generation_config(length, options)
        with torch.inference_mode():
            alone = backend.model.generate(**inputs, generation_config=config, output_logits=True, return_dict_in_generate=True)
        assert len(seen[index]) == length, index
        torch.testing.assert_close(torch.stack(seen[index]), torch.cat(alone.logits).float(), atol=1e-4, rtol=1e-4)


def test_refill_keeps_the_prompt_tokens_in_flight_within_the_token_budget(hf, monkeypatch):
    """With a token budget, the rows in flight never hold more prompt tokens than the budget (one
    request dearer than it runs alone); without one they would here."""
    from vlground.models.hf_refill import HFRows

    backend = hf["qwen2.5-vl"]
    requests = varied_requests("qwen2.5-vl", images(8, seed=10), [9, 2, 7, 4, 12, 3, 6, 5])
    costs = backend._costs(requests, GenerationOptions(thinking="off"))
    in_flight: list[list[int]] = []
    join = HFRows.join

    def joined(self, indices, prepared):
        logits = join(self, indices, prepared)
        in_flight.append(list(self.rows))
        return logits

    monkeypatch.setattr(HFRows, "join", joined)
    budget = sorted(costs)[-1] + sorted(costs)[0]  # the dearest fits, but never with all of the rest
    for token_budget in (None, budget):
        in_flight.clear()
        backend.generate(requests, GenerationOptions(batch_size=4, refill=True, token_budget=token_budget,
                                                     min_new_tokens=PINNED, thinking="off"))
        spent = [sum(costs[i] for i in rows) for rows in in_flight]
        assert max(len(rows) for rows in in_flight) > 1  # rows did run together
        if token_budget is None:
            assert max(spent) > budget  # the workload would exceed it
        else:
            assert all(total <= budget for total, rows in zip(spent, in_flight) if len(rows) > 1), (spent, budget)


def test_hf_refill_applies_the_checkpoints_repetition_penalty_per_row(hf, monkeypatch):
    backend = hf["qwen2-vl"]
    requests = varied_requests("qwen2-vl", images(5, seed=4), [12, 4, 9, 15, 6])
    monkeypatch.setattr(backend.model.generation_config, "repetition_penalty", 3.0)
    options = dict(min_new_tokens=PINNED)
    alone = [backend.generate([r], GenerationOptions(batch_size=1, **options))[0] for r in requests]
    refilled = backend.generate(requests, GenerationOptions(batch_size=3, refill=True, **options))
    assert refilled == alone
    monkeypatch.setattr(backend.model.generation_config, "repetition_penalty", 1.0)
    assert backend.generate(requests, GenerationOptions(batch_size=3, refill=True, **options)) != alone


def test_hf_refill_refuses_generation_settings_it_cannot_apply(hf, monkeypatch, caplog):
    backend = hf["qwen2-vl"]
    monkeypatch.setattr(backend.model.generation_config, "no_repeat_ngram_size", 2)
    requests = varied_requests("qwen2-vl", images(3, seed=5), [5, 5, 5])
    alone = [backend.generate([r], GenerationOptions(batch_size=1))[0] for r in requests]
    with caplog.at_level(logging.WARNING, logger="vlground"):
        assert backend.generate(requests, GenerationOptions(batch_size=3, refill=True)) == alone
        assert backend.generate(requests[:2], GenerationOptions(batch_size=3, refill=True)) == alone[:2]
    assert "no_repeat_ngram_size" in caplog.text
    assert caplog.text.count("refill is off") == 1  # said once, not once per chunk of a job


def test_refill_that_runs_out_of_memory_leaves_the_rest_to_plain_batches(hf, monkeypatch, caplog):
    backend = hf["qwen2.5-vl"]
    requests = varied_requests("qwen2.5-vl", images(5, seed=6), [6, 2, 9, 3, 5])
    alone = [backend.generate([r], GenerationOptions(batch_size=1))[0] for r in requests]
    engines = engine_spy(backend, monkeypatch)
    from vlground.models.hf_refill import HFRows

    step, calls = HFRows.step, []

    def failing(self, tokens):
        calls.append(1)
        if len(calls) == 4:
            raise torch.OutOfMemoryError("CUDA out of memory (planted)")
        return step(self, tokens)

    monkeypatch.setattr(HFRows, "step", failing)
    with caplog.at_level(logging.WARNING, logger="vlground"):
        answers = backend.generate(requests, GenerationOptions(batch_size=2, refill=True))
    assert answers == alone and engines and "plain batches" in caplog.text
    calls.clear()
    monkeypatch.setattr(HFRows, "step", lambda self, tokens: (_ for _ in ()).throw(ValueError("planted")))
    with pytest.raises(ValueError, match="planted"):
        backend.generate(requests, GenerationOptions(batch_size=2, refill=True))
    recorded = backend.generate(requests, GenerationOptions(batch_size=2, refill=True), errors="record")
    assert recorded == alone  # record: the plain batches take over


# -- native Qwen-VL ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def native(tmp_path_factory):
    folder = make_tiny_qwen_vl(tmp_path_factory.mktemp("qwen_vl") / "Qwen-VL-Chat", chat=True)
    return QwenVLBackend.load(folder, get_family(folder), device="cpu", dtype="fp32")


def test_native_schedules_answer_as_one_at_a_time_through_cache_compaction(native, monkeypatch):
    family = native.family
    lengths = [3, 21, 7, 15, 2, 18, 9, 12]
    requests = varied_requests(family, images(8, seed=7, low=20, high=120), lengths)
    compactions = []
    compact = NativeRows._compact
    monkeypatch.setattr(NativeRows, "_compact", lambda self: (compactions.append(self.column), compact(self))[1])
    for pinned in (PINNED, 0):
        alone = [native.generate([r], GenerationOptions(batch_size=1, min_new_tokens=pinned))[0] for r in requests]
        for settings in (dict(batch_size=2, refill=True), dict(batch_size=4, refill=True, prefetch=True, token_budget=900),
                         dict(batch_size=4, token_budget=700, prefetch=True)):
            compactions.clear()
            assert native.generate(requests, GenerationOptions(min_new_tokens=pinned, **settings)) == alone, settings
            if pinned and settings["batch_size"] == 2:
                assert compactions  # two rows outlive the cache's width: their slots were moved


def test_native_refill_utilisation_beats_plain_batches(native, monkeypatch):
    lengths = [2, 24, 2, 2, 2, 2, 24, 2]
    requests = varied_requests(native.family, images(8, seed=8, low=20, high=120), lengths)
    engines = engine_spy(native, monkeypatch)
    native.generate(requests, GenerationOptions(batch_size=2, refill=True, min_new_tokens=PINNED))
    stats = engines[0].stats
    assert stats.useful_tokens == sum(lengths) and stats.utilisation > 0.9


def test_native_compaction_keeps_each_rows_keys_and_values_in_order(native):
    requests = varied_requests(native.family, images(3, seed=9, low=20, high=120), [30, 30, 30])
    engine = NativeRows(native, requests, [30] * 3, GenerationOptions(batch_size=3))
    engine.join([0, 1], [engine.prepare(0), engine.prepare(1)])
    for _ in range(5):
        engine.step(torch.tensor([7, 9, 0]))
    engine.join([2], [engine.prepare(2)])
    engine.step(torch.tensor([7, 9, 11]))
    engine.drop([1])
    cache = engine.cache

    def rows():
        return [[(k[row][:, cache.valid[row]].clone(), v[row][:, cache.valid[row]].clone())
                 for k, v in zip(cache.keys, cache.values)] for row in range(3)]

    before, column = rows(), engine.column
    engine._compact()
    after = rows()
    assert engine.column < column and cache.valid[1].sum() == 0
    for row_before, row_after in zip(before, after):
        for (k0, v0), (k1, v1) in zip(row_before, row_after):
            assert torch.equal(k0, k1) and torch.equal(v0, v1)
    # each live row's slots end just before the new write column
    assert all(bool(cache.valid[row, engine.column - 1]) for row in (0, 2))


def test_a_backend_that_cannot_count_prompt_tokens_batches_by_count_and_area(caplog):
    from vlground.models.base import Backend, Generation

    class Counting(Backend):  # as a server: no prompt-token counts
        family = get_family("qwen2.5-vl")

        def __init__(self):
            self.batches = []

        def _generate_batch(self, requests, budgets, options):
            self.batches.append([r.image.width for r in requests])
            return [Generation(text=str(r.image.width)) for r in requests]

    backend = Counting()
    requests = [Request(Image.new("RGB", (w, w)), build_prompt("read_text", "qwen2.5-vl")) for w in (500, 10, 400, 20, 300)]
    scheduled = GenerationOptions(batch_size=2, token_budget=1, refill=True, prefetch=True)
    with caplog.at_level(logging.WARNING, logger="vlground"):
        answers = backend.generate(requests, scheduled)
        backend.generate(requests[:1], scheduled)
    assert [a.text for a in answers] == ["500", "10", "400", "20", "300"]
    assert backend.batches[:3] == [[10, 20], [300, 400], [500]]  # the budget (of tokens) is not applied to areas
    # said, once: these options are not used here
    assert caplog.text.count("token_budget, refill, prefetch: this runtime schedules its own batches; ignored") == 1
