"""Beam search as the LoRA reference code decodes E2E (microsoft/LoRA examples/NLG/src/gpt2_beam.py), batched.

Its rules, which transformers' `generate` does not follow:
- no-repeat n-gram blocking looks at the generated tokens only (transformers' processor counts the prompt too: with
  the `MR <eos> reference` format the names and numbers of the MR could then never be written);
- a beam that emits an end token becomes a candidate scored logprob_sum / generated_len ** length_penalty (the end
  token counted) and its slot dies (score -inf) for the rest of the search, which keeps its width by picking the
  best continuations of the live beams; no early stopping: all max_new_tokens steps run, every finished beam is
  kept as a candidate, and after the last step every beam still open is one too;
- step 0 expands the first beam only; the best candidate per prompt (strictly better replaces) is the output.
"""
import inspect

import torch
import torch.nn.functional as F


def cache_argument(model: torch.nn.Module) -> str:
    """The forward's KV-cache keyword: `cache` in transformers >= 5.2x, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def banned_ngram_mask(history: torch.Tensor, n: int, vocab: int) -> torch.Tensor:
    """(hyps, vocab) True where a token would repeat an n-gram already in that hypothesis's generated tokens.

    history: (hyps, t) generated tokens. The last n-1 tokens are matched against every earlier (n-1)-gram that has
    a token after it; those following tokens are banned (fairseq's rule, as gpt2_beam.py copies it).
    """
    hyps, t = history.shape
    banned = torch.zeros(hyps, vocab, dtype=torch.bool, device=history.device)
    if n <= 0 or t + 1 < n:
        return banned
    if n == 1:  # every generated token is a 1-gram already seen
        return banned.scatter_(1, history, True)
    windows = history.unfold(1, n - 1, 1)[:, :t - n + 1]  # (hyps, t-n+1, n-1): prefixes with a next token
    suffix = history[:, t - n + 1:].unsqueeze(1)           # (hyps, 1, n-1): what was just generated
    rows, starts = (windows == suffix).all(-1).nonzero(as_tuple=True)
    banned[rows, history[rows, starts + n - 1]] = True
    return banned


@torch.no_grad()
def beam_search(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_beams: int,
                max_new_tokens: int, length_penalty: float, no_repeat_ngram_size: int,
                eos_token_ids: list[int]) -> list[list[int]]:
    """The generated tokens of the best candidate per prompt (end token included when it finished).

    input_ids, attention_mask: (batch, prompt_len), prompts left-padded (each ends in the last column).
    """
    batch, k, device = input_ids.shape[0], num_beams, input_ids.device
    position = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions count real tokens only
    cache = cache_argument(model)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position, use_cache=True)
    copies = torch.arange(batch, device=device).repeat_interleave(k)  # each prompt read once, its cache copied k times
    past, logits = out[cache], out["logits"][:, -1][copies]
    past.reorder_cache(copies)
    mask, next_position = attention_mask[copies], position[copies, -1:] + 1   # (batch*k, prompt_len), (batch*k, 1)
    eos = torch.tensor(eos_token_ids, device=device)
    offsets = (torch.arange(batch, device=device) * k).unsqueeze(-1)  # (batch, 1): first row of each prompt
    beam_scores = torch.zeros(batch, k, device=device)
    history, token = input_ids.new_zeros(batch * k, 0), None  # generated tokens; the last step's picks
    best_score = [None] * batch
    best = [[] for _ in range(batch)]

    def offer(scores: torch.Tensor, length: int, finished: torch.Tensor) -> None:
        """Candidates: the beams flagged in `finished` (batch, k), scored sum / length ** length_penalty."""
        for b, j in finished.nonzero().tolist():
            score = float(scores[b, j]) / length ** length_penalty
            if best_score[b] is None or best_score[b] < score:
                best_score[b], best[b] = score, history[b * k + j].tolist()

    for step in range(max_new_tokens):
        if step:
            mask = torch.cat([mask, mask.new_ones(batch * k, 1)], dim=1)
            out = model(input_ids=token, attention_mask=mask, position_ids=next_position, use_cache=True,
                        **{cache: past})
            past, logits = out[cache], out["logits"][:, -1]
            next_position = next_position + 1
        logits = logits.float().masked_fill(banned_ngram_mask(history, no_repeat_ngram_size, logits.shape[-1]),
                                            float("-inf"))
        logprob = F.log_softmax(logits, dim=-1).view(batch, k, -1)   # (batch, k, vocab)
        vocab = logprob.shape[-1]
        if step == 0:
            candidates = logprob[:, 0]                               # (batch, vocab): the k beams are copies
        else:
            candidates = (beam_scores.unsqueeze(-1) + logprob).view(batch, k * vocab)
        beam_scores, flat = torch.topk(candidates, k, dim=1, largest=True, sorted=True)
        rows = ((flat // vocab) + offsets).view(-1)                  # (batch*k,) the beam each pick extends
        token = (flat % vocab).view(-1, 1)
        past.reorder_cache(rows)
        mask, history = mask[rows], torch.cat([history[rows], token], dim=1)
        finished = torch.isin(token.view(batch, k), eos)
        offer(beam_scores, step + 1, finished)
        beam_scores = beam_scores.masked_fill(finished, float("-inf"))
    offer(beam_scores, max_new_tokens, torch.ones_like(beam_scores, dtype=torch.bool))
    return best
