"""Beam search follows gpt2_beam.py's rules: n-gram blocking over generated tokens only, dead slots for finished
beams, every finished beam a candidate, no early stop; the batched, cached search equals a plain one-prompt loop."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny
from lora_repro.beam import banned_ngram_mask, beam_search


def fairseq_banned(history: list[int], n: int) -> set[int]:
    """gpt2_beam.py's _calc_banned_ngram_tokens for one hypothesis, as written there (dict of prefixes)."""
    if n <= 0 or len(history) + 1 < n:
        return set()
    seen = {}
    for gram in zip(*[history[i:] for i in range(n)]):
        seen.setdefault(tuple(gram[:-1]), []).append(gram[-1])
    return set(seen.get(tuple(history[len(history) + 1 - n:]), []))


def plain_beam_search(model, prompt: list[int], k: int, max_new: int, lp: float, n: int, eos: set[int]) -> list[int]:
    """gpt2_beam.py's loop for one prompt in scalar form, no KV cache: the model reruns on prompt + history."""
    beams = [([], 0.0)] * k
    best_score, best = None, None
    for step in range(max_new):
        candidates = []
        for j, (history, score) in enumerate(beams[:1] if step == 0 else beams):
            logits = model(input_ids=torch.tensor([prompt + history])).logits[0, -1].detach().float()
            logits[list(fairseq_banned(history, n))] = float("-inf")
            logprob = F.log_softmax(logits, -1)
            candidates += [(score + float(logprob[v]), j, v) for v in range(len(logprob))]
        picked = sorted(candidates, key=lambda c: -c[0])[:k]
        beams = [(beams[j][0] + [v], score) for score, j, v in picked]
        for j, (history, score) in enumerate(beams):
            if history[-1] in eos:  # a candidate; its slot is dead from now on
                if best_score is None or best_score < score / len(history) ** lp:
                    best_score, best = score / len(history) ** lp, history
                beams[j] = (history, float("-inf"))
    for history, score in beams:
        if best_score is None or best_score < score / max_new ** lp:
            best_score, best = score / max_new ** lp, history
    return best


def left_pad(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def test_banned_tokens_are_those_after_earlier_copies_of_the_last_n_minus_1_tokens():
    history = torch.tensor([[1, 2, 3, 1, 2], [1, 2, 3, 1, 4], [5, 5, 5, 5, 5]])
    banned = banned_ngram_mask(history, 3, 8)
    assert [set(row.nonzero().flatten().tolist()) for row in banned] == [{3}, set(), {5}]
    for n in (1, 2, 3, 4, 6):
        got = [set(row.nonzero().flatten().tolist()) for row in banned_ngram_mask(history, n, 8)]
        assert got == [fairseq_banned(h, n) for h in history.tolist()]


@pytest.mark.parametrize("k,n,lp,eos", [(1, 0, 1.0, (0,)), (3, 2, 0.8, (0, 5)), (5, 3, 0.9, (0, 1, 2)),
                                        (4, 4, 1.2, (7,))])
def test_batched_cached_search_equals_the_plain_loop_of_gpt2_beam(k, n, lp, eos):
    torch.manual_seed(k * 10 + n)
    model = tiny("gpt2", causal=True, vocab_size=24, n_positions=128).double()  # small vocab: ends and blocks occur
    prompts = [[3, 9, 4, 0], [11, 12, 13, 14, 15, 16, 0], [8, 0]]
    ids, mask = left_pad(prompts, pad=0)
    got = beam_search(model, ids, mask, k, 12, lp, n, list(eos))
    assert got == [plain_beam_search(model, p, k, 12, lp, n, set(eos)) for p in prompts]
    assert any(len(g) < 12 for g in got) or eos == (7,)  # some beams finished early, and were kept


class CopyLM(torch.nn.Module):
    """A fake LM whose next token depends on the last one only: `table[last]` scores 10, end token 0 scores 5."""

    def __init__(self, table: dict[int, int], vocab: int = 16):
        super().__init__()
        self.logits = torch.zeros(vocab, vocab)
        self.logits[:, 0] = 5.0
        for last, nxt in table.items():
            self.logits[last, nxt] = 10.0

    def forward(self, input_ids, cache=None, **unused):
        return {"logits": self.logits[input_ids], "cache": cache or SimpleNamespace(reorder_cache=lambda rows: None)}


def test_an_ngram_of_the_prompt_can_be_generated():
    # prompt "3 4 5 6 <sep 9>": the LM copies 3 4 5 6 after the separator. transformers' processor counts the prompt
    # and would ban the 6; the reference blocks repeats of generated n-grams only (names and numbers of the MR).
    model = CopyLM({9: 3, 3: 4, 4: 5, 5: 6, 6: 0})
    ids, mask = left_pad([[3, 4, 5, 6, 9]], pad=0)
    assert beam_search(model, ids, mask, 1, 10, 1.0, 4, [0]) == [[3, 4, 5, 6, 0]]


def test_a_generated_ngram_is_not_repeated():
    # 1 2 3 1 2 3 then 1 would repeat the 4-gram "1 2 3 1": the next best token, the end, is taken instead
    model = CopyLM({9: 1, 1: 2, 2: 3, 3: 1})
    ids, mask = left_pad([[9]], pad=0)
    assert beam_search(model, ids, mask, 1, 20, 1.0, 4, [0]) == [[1, 2, 3, 1, 2, 3, 0]]
    assert beam_search(model, ids, mask, 1, 8, 1.0, 0, [0]) == [[1, 2, 3, 1, 2, 3, 1, 2]]  # no blocking: 8 steps
