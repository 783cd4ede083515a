"""Synthetic training data: generate per-label patents, audit them, and measure whether they help.

* :mod:`patentcpc.synth.generators`: target counts per label, prompts (label description or
  few-shot), and the generators ``hf`` (local causal LM), ``openai`` (any OpenAI-compatible
  ``/v1/chat/completions`` endpoint) and ``recombine`` (no LLM: phrases / n-grams of same-label
  real texts, never a real text verbatim);
* :mod:`patentcpc.synth.audit`: leakage, exact and near-duplicate filtering, fidelity (MMD) and
  diversity, with a markdown + JSON report and plots;
* :mod:`patentcpc.synth.experiment`: real-only vs duplicate-to-match vs focal loss vs real +
  synthetic mixes, over seeds, for any model kind.
"""

from __future__ import annotations

__all__ = ["audit", "experiment", "generators"]
