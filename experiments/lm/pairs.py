"""Minimal pairs built from a corpus, so no benchmark has to be downloaded.

Each pair is a context (the text just before, as read in the corpus) and two
continuations, the correct one first:
  lexical    a real word vs a non-word made from it by changing one inner letter
             (never a word of the corpus), both followed by the same character;
  syntactic  a sentence vs the same sentence with two adjacent words swapped;
  story      the sentence that really follows the context vs a sentence from
             elsewhere in the text.
Lexical and syntactic items have equal lengths; story items do not, which is
where summed and length-normalised scores part ways.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

TASKS = ("lexical", "syntactic", "story")
WORD = re.compile(r"(?<![A-Za-z])[a-z]{5,12}(?![A-Za-z])")
# After a sentence's end and one or two spaces (pydoc uses two) or a newline; may span lines.
SENTENCE = re.compile(r"(?:(?<=[.!?] )|(?<=[.!?]  )|(?<=[.!?]\n))[A-Z][^.!?]{20,160}[.!?](?=\s|$)")


@dataclass(frozen=True)
class Pair:
    context: str
    correct: str
    distractor: str


def build(task: str, text: str, n: int, context: int, seed: int = 0) -> list[Pair]:
    """Up to n pairs of `task` from `text`, each with `context` (>= 1) characters before it."""
    if context < 1:
        raise ValueError(f"pair_context {context}: a pair needs at least one character before it")
    builders = {"lexical": lexical, "syntactic": syntactic, "story": story}
    if task not in builders:
        raise ValueError(f"task {task!r}: use one of {', '.join(TASKS)}")
    return builders[task](text, n, context, random.Random(seed))


def lexical(text: str, n: int, context: int, rng: random.Random) -> list[Pair]:
    words = set(WORD.findall(text.lower()))
    letters = "abcdefghijklmnopqrstuvwxyz"
    pairs = []
    for match in _sample(list(WORD.finditer(text)), context, n, rng):
        word, after = match.group(), text[match.end()]
        for _ in range(20):
            index = rng.randrange(1, len(word) - 1)
            fake = word[:index] + rng.choice(letters.replace(word[index], "")) + word[index + 1 :]
            if fake not in words:
                before = text[match.start() - context : match.start()]
                pairs.append(Pair(before, word + after, fake + after))
                break
    return pairs


def syntactic(text: str, n: int, context: int, rng: random.Random) -> list[Pair]:
    pairs = []
    for match in _sample(list(SENTENCE.finditer(text)), context, n, rng):
        parts = re.split(r"(\s+)", match.group())  # words at even indices, spaces between
        # Inner words only: moving the first (capital) or last (full stop) word is a cue
        # that has nothing to do with word order.
        swappable = [i for i in range(2, len(parts) - 4, 2) if parts[i] != parts[i + 2]]
        if not swappable:
            continue
        i = rng.choice(swappable)
        parts[i], parts[i + 2] = parts[i + 2], parts[i]
        before = text[match.start() - context : match.start()]
        pairs.append(Pair(before, match.group(), "".join(parts)))
    return pairs


def story(text: str, n: int, context: int, rng: random.Random) -> list[Pair]:
    sentences = list(SENTENCE.finditer(text))
    pairs = []
    for match in _sample(sentences, context, n, rng):
        elsewhere = [
            s
            for s in sentences
            if abs(s.start() - match.start()) >= 2 * context and s.group() != match.group()
        ]
        if elsewhere:
            before = text[match.start() - context : match.start()]
            pairs.append(Pair(before, match.group(), rng.choice(elsewhere).group()))
    return pairs


def _sample(matches: list[re.Match], context: int, n: int, rng: random.Random) -> list[re.Match]:
    """n matches with `context` characters before them, in text order."""
    usable = [m for m in matches if m.start() >= context and m.end() < len(m.string)]
    return sorted(rng.sample(usable, min(n, len(usable))), key=lambda m: m.start())
