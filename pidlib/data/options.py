"""The two options of a GQA choose question: from its program or its text, in question order.

Every case the derivation handles (tests in ``tests/test_gqa_options.py``):

1. Attribute and category programs, ``choose <type>: a|b`` (``choose color: brown|white``,
   ``choose name: cell phone|computer``, ``choose material: wood|iron``): the two values as
   written, in the answer's vocabulary already.
2. Relation programs, ``choose rel: subject,rel A|rel B,s (id)`` (or ``,o (id)``): the middle
   field. GQA writes the relations as phrases (``to the left of``, ``in front of``, ``on top of``)
   while its answers are bare words (``left``, ``front``, ``top``). Each phrase has spellings
   from its head word up to the whole phrase (``front``, ``in front``, ``in front of``;
   ``left``, ``the left``, ``to the left``, ``to the left of``); the answer picks the shortest
   spelling it equals, and the other option is spelt the same way. Both options are therefore
   always in one vocabulary: never ``('behind', 'in front of')``, whose spelling would give the
   answer away.
3. Options spelt with a hyphen (``t-shirt``) or across several words (``light brown``,
   ``short sleeved``): matched against the question word by word, a hyphen counting as a space.
4. No program, or one whose options do not contain the answer: "X or Y" read from the question
   around the answer ("Is the sky cloudy or clear?"). Articles, "maybe" and the prepositions
   of position after "or" are skipped ("dry or maybe wet", "on the top or on the bottom"); the
   other option is one word, or as many as the answer when they share the last word ("short
   sleeved or long sleeved"), spelt as the question spells it (hyphenated words stay whole).
   Without a program, "dark or light brown" with answer "dark" reads "light": GQA's files
   always carry the program, which gives "light brown".
5. Question order: the options are sorted by where the question names them (any spelling of
   case 2; the occurrence nearest an "or" when a word appears twice). If the question does not
   name both, the order is alphabetical, which never depends on the answer: GQA's programs list
   the answer first in most attribute and relation questions, so their order would leak it.
6. Zhang et al.'s released ``true option`` / ``false option`` (the task CSVs): brought into the
   answer's vocabulary as in case 2 (a no-op for the released lists), then put in question
   order as in case 5 (the released columns list the answer first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "relation_spellings",
    "in_answer_vocabulary",
    "program_options",
    "question_order",
    "choose_options",
]

#: Words that wrap a relation's head word in GQA's relation phrases ("to the left of").
_LEADING = ("to", "the", "in", "on", "at")
#: Words GQA's templates put between "or" and the second option ("dry or maybe wet", "on the
#: left or on the right", "to the left or to the right of").
_AFTER_OR = ("a", "an", "the", "maybe", "on", "to", "in", "at")
_WORD = re.compile(r"[a-z0-9']+")
_COMPOUND = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")  # "t-shirt" stays one word


def _words(text: str) -> list[str]:
    """Lower-cased words; hyphens and punctuation separate words ("t-shirt" -> t, shirt)."""
    return _WORD.findall(text.lower())


def relation_spellings(phrase: str) -> tuple[str, ...]:
    """A relation phrase's spellings, shortest first: ``"in front of"`` -> front, in front,
    in front of. The head drops leading :data:`_LEADING` words and a trailing "of"."""
    words = phrase.lower().split()
    out = [" ".join(words)]
    if len(words) > 1 and words[-1] == "of":
        words = words[:-1]
        out.append(" ".join(words))
    while len(words) > 1 and words[0] in _LEADING:
        words = words[1:]
        out.append(" ".join(words))
    return tuple(reversed(dict.fromkeys(out)))


def in_answer_vocabulary(pair: Sequence[str], answer: str) -> tuple[str, str] | None:
    """Both options of ``pair`` spelt like the answer (case 2), or ``None`` if the answer is
    neither: ``("in front of", "behind")`` with answer "behind" -> ("front", "behind")."""
    spell = [relation_spellings(p) for p in pair]
    for depth in range(max(len(s) for s in spell)):
        forms = tuple(s[min(depth, len(s) - 1)] for s in spell)
        if answer in forms and forms[0] != forms[1]:
            return forms  # type: ignore[return-value]
    return None


def program_options(program: Iterable[Mapping[str, Any]] | None) -> list[tuple[str, str]]:
    """Option pairs of the ``choose`` steps of a GQA semantic program, as the program writes
    them ("choose rel" arguments read "subject,rel A|rel B,s (id)": the middle field)."""
    out = []
    for step in program or ():
        op, arg = str(step.get("operation", "")), str(step.get("argument", ""))
        if not op.startswith("choose") or "|" not in arg:
            continue
        field_ = next((f for f in arg.split(",") if "|" in f), arg)
        opts = tuple(" ".join(o.lower().split()) for o in field_.split("|"))
        if len(opts) == 2 and all(opts):
            out.append(opts)
    return out


def _find(words: list[str], target: list[str]) -> list[int]:
    n = len(target)
    return [i for i in range(len(words) - n + 1) if n and words[i : i + n] == target]


def _position(words: list[str], option: str, ors: list[int]) -> int | None:
    """Where the question names ``option`` (any spelling), preferring the occurrence nearest an
    "or"; ``None`` if it never does."""
    hits = [i for s in relation_spellings(option) for i in _find(words, _words(s))]
    if not hits:
        return None
    return min(hits, key=lambda i: (min((abs(i - o) for o in ors), default=0), i))


def question_order(question: str, options: Sequence[str]) -> tuple[tuple[str, ...], bool]:
    """``(options, found)``: in the order the question names them (``found``), else sorted."""
    words = _words(question)
    ors = [i for i, w in enumerate(words) if w == "or"]
    pos = [_position(words, o, ors) for o in options]
    if all(p is not None for p in pos) and len(set(pos)) == len(pos):
        return tuple(o for _, o in sorted(zip(pos, options, strict=True))), True
    return tuple(sorted(options)), False


def _spans(question: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _COMPOUND.finditer(question.lower())]


def _other_words(side: list, n_ans: int, last: str, before: bool) -> list:
    """The option next to "or" on one side: one word, or as many as the answer when it ends in
    the same word ("short sleeved or long sleeved")."""
    window = side[-n_ans:] if before else side[:n_ans]
    if n_ans > 1 and len(window) == n_ans and window[-1][0] == last:
        return window
    return side[-1:] if before else side[:1]


def _question_options(question: str, answer: str) -> tuple[str, str] | None:
    """Case 4: "... X or Y ..." around the answer; the other option as the question spells it."""
    spans, ans = _spans(question), _COMPOUND.findall(answer.lower())
    words, n = [s[0] for s in spans], len(ans)
    text = question.lower()
    for i, w in enumerate(words):
        if w != "or" or not n:
            continue
        j = i + 1
        while j < len(words) - 1 and words[j] in _AFTER_OR:
            j += 1
        left, right = spans[:i], spans[j:]
        if words[:i][-n:] == ans:
            other = _other_words(right, n, ans[-1], before=False)
            if other:
                return answer, text[other[0][1] : other[-1][2]]
        if words[j : j + n] == ans:
            other = _other_words(left, n, ans[-1], before=True)
            if other:
                return text[other[0][1] : other[-1][2]], answer
    return None


def choose_options(
    question: str, answer: str, program: Iterable[Mapping[str, Any]] | None = None
) -> tuple[str, ...] | None:
    """The two options of a choose question in question order, or ``None`` if not found.

    Tried in turn (the module docstring lists every case): the program's ``choose`` pairs in
    the answer's vocabulary; "X or Y" read from the question around the answer. A result always
    contains ``answer`` and never depends on it otherwise (no order, no spelling leaks it).
    """
    answer = " ".join(answer.lower().split())
    for pair in program_options(program):
        forms = in_answer_vocabulary(pair, answer)
        if forms:
            return question_order(question, forms)[0]
    pair = _question_options(question, answer)
    if pair and _words(pair[0]) != _words(pair[1]):
        return question_order(question, pair)[0]
    return None
