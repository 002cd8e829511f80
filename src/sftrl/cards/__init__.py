"""GeneralPoints, the 24-point card game: rules, dealing, exact solver, prompts, verifier, episodes.

Submodules, one job each: ``rules`` (ranks, face-card rules), ``expr`` (safe exact formula reading),
``solver`` (all distinct solutions, dealing), ``formats`` (prompts, reference answers, reply
parsing), ``verify`` (category and reward of a reply), ``episode`` (the multi-turn game).
"""

from .episode import COMPACT_FEEDBACK, FEEDBACK, Episode, feedback
from .expr import solution_steps
from .formats import ANSWER_LAYOUTS, STYLES, Answer, answer, in_answer_layout, messages, parse, prompt
from .rules import CARD_SYMBOLS, RULES, Hand, Rule, get_rule
from .solver import deal, is_solvable, solutions
from .verify import CATEGORIES, STRICT_LAYOUTS, Rewards, Verdict, verify

__all__ = [
    "ANSWER_LAYOUTS",
    "CARD_SYMBOLS",
    "CATEGORIES",
    "COMPACT_FEEDBACK",
    "FEEDBACK",
    "RULES",
    "STRICT_LAYOUTS",
    "STYLES",
    "Answer",
    "Episode",
    "Hand",
    "Rewards",
    "Rule",
    "Verdict",
    "answer",
    "deal",
    "feedback",
    "get_rule",
    "in_answer_layout",
    "is_solvable",
    "messages",
    "parse",
    "prompt",
    "solution_steps",
    "solutions",
    "verify",
]
