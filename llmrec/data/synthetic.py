"""The synthetic default: a documented generative model of LLM evaluation records.

Model (all draws from one seeded ``numpy.random.Generator``):

* ``n_topics`` topics. Topic ``t`` has a vocabulary of words (real words for the
  first 16 topics, generated pseudo-words beyond), and a shared pool of filler words.
* Prompt ``p``: a main topic ``z_p`` (uniform), a topic mixture
  ``pi_p = 0.8 * onehot(z_p) + 0.2 * Dirichlet(1)``, a difficulty ``d_p ~ N(0, 1)``.
  Its text draws 8-16 words, each from topic ``z_p``'s vocabulary with probability
  0.7 (else a filler word), so that a text encoder can recover the topic.
* LLM ``m``: a general ability ``a_m ~ N(0, 1)``, per-topic skills
  ``s_mt ~ N(0, topic_spread)``, a size ``params_b`` growing with ability, and a
  price per 1M tokens growing with size.
* Probability that ``m`` solves ``p``: ``sigmoid(a_m + pi_p . s_m - d_p)``. The score
  depends on ``kind``: ``"binary"`` (the default) a Bernoulli draw; ``"graded"``
  that probability plus N(0, 0.05) noise clipped to [0, 1]; ``"judge"`` a 1-10
  judge score, ``round(1 + 9 * graded)``; ``"preference"`` a win rate against a
  reference LLM ``r``, ``sigmoid(2 * (logit_pm - logit_pr))`` plus N(0, 0.05) noise
  clipped to [0, 1], with the reference itself at exactly 0.5 on every prompt (as
  in judge-preference data such as Arena-style win rates).
* Each cell is observed with probability ``density`` (1.0: a dense benchmark).

Different LLMs win on different topics (the skills), so the oracle beats the best
single LLM by a clear margin, and a router that reads the topic from the text can
close part of that gap. Generation works in blocks of prompts, so RouterEval-sized
sets (40,000 prompts x 8,500 LLMs) fit in memory (the result is a CSR matrix).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ConfigError
from .records import PerformanceRecords

_TOPIC_WORDS = {
    "algebra": "equation solve variable polynomial root factor quadratic linear coefficient "
               "integer sum product",
    "geometry": "triangle circle angle radius area perimeter polygon square hypotenuse "
                "diameter volume cone",
    "coding": "function python array loop string return compile recursion variable class "
              "list algorithm",
    "law": "court contract statute plaintiff defendant liability tort jurisdiction verdict "
           "appeal evidence judge",
    "medicine": "patient diagnosis symptom treatment dose disease clinical therapy infection "
                "blood heart chronic",
    "history": "empire war revolution century treaty king dynasty colonial ancient battle "
               "reform republic",
    "physics": "velocity force energy mass momentum particle quantum field acceleration "
               "wave charge gravity",
    "chemistry": "molecule reaction acid bond electron compound solution oxidation ion "
                 "catalyst element molar",
    "biology": "cell gene protein organism evolution enzyme species membrane dna tissue "
               "mitosis ecology",
    "economics": "market price demand supply inflation interest monetary fiscal trade "
                 "elasticity tax gdp",
    "literature": "novel poem author character narrative metaphor theme stanza plot "
                  "sonnet prose tragedy",
    "philosophy": "ethics moral argument logic premise virtue knowledge truth metaphysics "
                  "reason kant utilitarian",
    "psychology": "behavior cognitive memory emotion perception therapy stimulus "
                  "personality learning anxiety motivation bias",
    "geography": "river mountain climate continent population capital border region "
                 "desert ocean latitude terrain",
    "business": "revenue profit accounting management marketing strategy investment asset "
                "firm shareholder audit budget",
    "engineering": "circuit voltage beam load design material stress torque resistor "
                   "current turbine thermal",
}
_FILLER = ("what which how is the of a an in for to following best describes most likely "
           "correct answer statement true would given consider explain find").split()


def _topic_vocab(n_topics: int, rng: np.random.Generator) -> tuple[list[str], list[list[str]]]:
    names, vocab = [], []
    base = list(_TOPIC_WORDS.items())
    for t in range(n_topics):
        if t < len(base):
            names.append(base[t][0])
            vocab.append(base[t][1].split())
        else:
            names.append(f"topic{t}")
            letters = np.array(list("bcdfghjklmnprstvz"))
            vowels = np.array(list("aeiou"))
            words = []
            for _ in range(12):
                n_syl = int(rng.integers(2, 4))
                words.append("".join(rng.choice(letters) + rng.choice(vowels)
                                     for _ in range(n_syl)))
            vocab.append(words)
    return names, vocab


def make_synthetic(n_prompts: int = 2000, n_llms: int = 20, n_topics: int = 8, seed: int = 0,
                   *, density: float = 1.0, binary: bool = True, topic_spread: float = 1.5,
                   block_size: int = 4096, kind: str | None = None,
                   reference: int | str | None = None) -> PerformanceRecords:
    """Generate synthetic evaluation records (see the module docstring for the model).

    Parameters
    ----------
    n_prompts, n_llms, n_topics : int
    seed : int
    density : float in (0, 1]
        Share of (prompt, LLM) cells observed.
    binary : bool
        Bernoulli 0/1 scores (True) or noisy probabilities in [0, 1]; ignored when
        ``kind`` is given.
    topic_spread : float
        Std of per-topic skills; larger means more room for routing.
    kind : {"binary", "graded", "judge", "preference"}, optional
        The score kind (module docstring); default from ``binary``.
    reference : int or str, optional
        The reference LLM of ``kind="preference"`` (position or name); default the
        LLM of median general ability.

    Returns
    -------
    PerformanceRecords
        Prompt table with ``text``, ``benchmark`` (= main topic), ``category``,
        ``difficulty``; LLM table with ``params_b``, ``price_input``,
        ``price_output``, ``provider``, ``ability``.

    Examples
    --------
    >>> rec = make_synthetic(100, 5, n_topics=3, seed=0)
    >>> rec.shape
    (100, 5)
    >>> rec.prompts.loc[0, "benchmark"] in {"algebra", "geometry", "coding"}
    True
    >>> pref = make_synthetic(100, 5, seed=0, kind="preference")
    >>> pref.score_kind, pref.reference_llm
    ('preference', 'llm-02')
    """
    if n_prompts < 1 or n_llms < 1 or n_topics < 1:
        raise ConfigError("n_prompts, n_llms and n_topics must be >= 1")
    if not 0 < density <= 1:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    kind = kind if kind is not None else ("binary" if binary else "graded")
    if kind not in ("binary", "graded", "judge", "preference"):
        raise ConfigError(f"kind must be 'binary', 'graded', 'judge' or 'preference', "
                          f"got {kind!r}")
    if reference is not None and kind != "preference":
        raise ConfigError("reference is only used with kind='preference'")
    rng = np.random.default_rng(seed)
    names, vocab = _topic_vocab(n_topics, rng)

    z = rng.integers(0, n_topics, size=n_prompts)
    mix = 0.2 * rng.dirichlet(np.ones(n_topics), size=n_prompts).astype(np.float32)
    mix[np.arange(n_prompts), z] += 0.8
    difficulty = rng.normal(0.0, 1.0, size=n_prompts).astype(np.float32)

    ability = rng.normal(0.0, 1.0, size=n_llms).astype(np.float32)
    skills = rng.normal(0.0, topic_spread, size=(n_llms, n_topics)).astype(np.float32)
    lw = max(2, len(str(n_llms - 1)))
    llm_names = [f"llm-{j:0{lw}d}" for j in range(n_llms)]
    ref = None
    if kind == "preference":
        if reference is None:
            ref = int(np.argsort(ability, kind="stable")[(n_llms - 1) // 2])
        elif isinstance(reference, str):
            if reference not in llm_names:
                raise ConfigError(f"reference {reference!r} is not one of {llm_names[:5]}...")
            ref = llm_names.index(reference)
        else:
            ref = int(reference)
            if not 0 <= ref < n_llms:
                raise ConfigError(f"reference position {ref} is out of range 0..{n_llms - 1}")

    # texts
    lengths = rng.integers(8, 17, size=n_prompts)
    texts = []
    filler = np.array(_FILLER)
    for i in range(n_prompts):
        words_t = np.array(vocab[z[i]])
        k = lengths[i]
        from_topic = rng.random(k) < 0.7
        w = np.where(from_topic, rng.choice(words_t, size=k), rng.choice(filler, size=k))
        texts.append(" ".join(w).capitalize() + "?")

    # scores, in blocks of prompts, straight into CSR arrays (int32 column indices,
    # no COO intermediate), so RouterEval-sized dense sets fit in memory
    counts, cols, vals = [], [], []
    for start in range(0, n_prompts, block_size):
        stop = min(start + block_size, n_prompts)
        logit = ability[None, :] + mix[start:stop] @ skills.T - difficulty[start:stop, None]
        if kind == "preference":  # win rate against the reference
            logit = 2.0 * (logit - logit[:, ref:ref + 1])
        p = 1.0 / (1.0 + np.exp(-logit))
        del logit
        if density < 1:
            keep = rng.random(p.shape) < density
            r, c = np.nonzero(keep)  # row-major: rows ascending, columns ascending
            counts.append(keep.sum(axis=1))
            pv = p[r, c]
            del keep, r
        else:
            counts.append(np.full(stop - start, n_llms))
            c = np.tile(np.arange(n_llms, dtype=np.int32), stop - start)
            pv = p.ravel()
        if kind == "binary":
            v = (rng.random(pv.shape) < pv).astype(np.float32)
        else:
            v = np.clip(pv + rng.normal(0, 0.05, size=pv.shape), 0.0, 1.0).astype(np.float32)
            if kind == "judge":
                v = np.round(1.0 + 9.0 * v).astype(np.float32)
            elif kind == "preference":
                v[c == ref] = 0.5
        cols.append(c.astype(np.int32, copy=False))
        vals.append(v)
        del p, pv
    indptr = np.zeros(n_prompts + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=indptr[1:])
    if indptr[-1] < 2 ** 31 - 1:
        indptr = indptr.astype(np.int32)
    scores = sp.csr_matrix((np.concatenate(vals), np.concatenate(cols), indptr),
                           shape=(n_prompts, n_llms))
    del cols, vals

    width = max(4, len(str(n_prompts - 1)))
    prompts = pd.DataFrame({
        "prompt_id": [f"s{i:0{width}d}" for i in range(n_prompts)],
        "text": texts,
        "benchmark": [names[t] for t in z],
        "category": [names[t] for t in z],
        "difficulty": difficulty,
    })
    params_b = np.round(np.exp(2.0 + 0.8 * ability + rng.normal(0, 0.3, n_llms)), 1)
    price_in = np.round(0.05 * params_b, 3)
    llms = pd.DataFrame({
        "name": llm_names,
        "params_b": params_b,
        "price_input": price_in,
        "price_output": np.round(price_in * 3, 3),
        "provider": [f"provider-{j % 5}" for j in range(n_llms)],
        "ability": ability,
    })
    return PerformanceRecords(scores, prompts, llms,
                              score_range=(1.0, 10.0) if kind == "judge" else (0.0, 1.0),
                              name=f"synthetic(seed={seed})", score_kind=kind,
                              reference_llm=llm_names[ref] if ref is not None else None)
