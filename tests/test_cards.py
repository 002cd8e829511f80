"""Tests of sftrl.cards: rules, solver, formats, verifier (hand-checked, hostile, properties), episode."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sftrl import cards
from sftrl.cards import (
    CARD_SYMBOLS,
    CATEGORIES,
    FEEDBACK,
    RULES,
    STYLES,
    Answer,
    Episode,
    Rewards,
    Rule,
    answer,
    deal,
    feedback,
    get_rule,
    is_solvable,
    messages,
    parse,
    prompt,
    solution_steps,
    solutions,
    verify,
)
from sftrl.cards.expr import apply

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HAND = (7, 5, 11, 2)  # values 7 5 11 2 under OOD, 7 5 10 2 under ID
RANKS = st.tuples(*[st.integers(1, 13)] * 4)
RULE_NAMES = st.sampled_from(["id", "ood"])


def json_reply(formula: str, number=(7, 5, 11, 2)) -> str:
    return json.dumps({"cards": ["7", "5", "J", "2"], "number": list(number), "formula": formula})


# --- rules -----------------------------------------------------------------------------------------


def test_symbols_and_rule_values():
    assert [CARD_SYMBOLS[r] for r in (1, 2, 10, 11, 12, 13)] == ["A", "2", "10", "J", "Q", "K"]
    assert RULES["id"].values((1, 10, 11, 12, 13)) == (1, 10, 10, 10, 10)
    assert RULES["ood"].values((1, 10, 11, 12, 13)) == (1, 10, 11, 12, 13)
    assert RULES["id"].sentence == "'J', 'Q', and 'K' count as '10'."
    assert RULES["ood"].sentence == "'J', 'Q', and 'K' count as '11', '12', and '13' respectively."
    assert get_rule("ood") is RULES["ood"] and get_rule(RULES["id"]) is RULES["id"]
    with pytest.raises(ValueError, match=r"'half'.*id, ood"):
        get_rule("half")
    with pytest.raises(ValueError):
        RULES["id"].value(14)
    with pytest.raises(ValueError):
        Rule(-1, 2, 3)


def test_random_rule_uses_only_the_given_rng():
    state = random.getstate()
    a, b = Rule.random(random.Random(3)), Rule.random(random.Random(3))
    assert a == b and all(1 <= v <= 13 for v in (a.jack, a.queen, a.king))
    assert random.getstate() == state


# --- solver ----------------------------------------------------------------------------------------


def test_known_hands():
    assert solutions((1, 1, 1, 1), "id") == [] and not is_solvable((1, 1, 1, 1), "ood")
    assert solutions((3, 3, 8, 8), "id") == ["8/(3-8/3)"]
    assert "(7-5)*11+2" in solutions(HAND, "ood")
    assert solutions((6, 6, 6, 6), "id") == ["6*6-6-6", "6+6+6+6"]


def test_solutions_are_deduplicated_up_to_commutativity_and_associativity():
    sols = solutions((1, 2, 3, 4), "id")
    assert len(sols) == len(set(sols))
    only_products = [s for s in sols if re.fullmatch(r"\d(\*\d){3}", s)]
    assert only_products == ["1*2*3*4"]


def test_all_rank_multisets():
    hands = list(itertools.combinations_with_replacement(range(1, 14), 4))
    assert len(hands) == 1820
    assert sum(is_solvable(h, "id") for h in hands) == 1236  # checked against an independent brute force
    assert sum(is_solvable(h, "ood") for h in hands) == 1362  # the known count for cards 1..13


@pytest.mark.parametrize("target", [0, 1, 24, 36, 100])
def test_solvable_exactly_where_a_solution_is_found(target):
    """is_solvable reaches values without formulas; it must agree with the formulas hand by hand."""
    hands = list(itertools.combinations_with_replacement(range(1, 14), 4))
    for rule in ("id", "ood"):
        assert [h for h in hands if is_solvable(h, rule, target)] == [h for h in hands if solutions(h, rule, target)], (
            rule,
            target,
        )


def test_deal():
    state = random.getstate()
    hands = [deal(random.Random(7), "ood") for _ in range(2)]
    assert hands[0] == hands[1]
    assert random.getstate() == state
    rng = random.Random(1)
    for rule in ("id", "ood"):
        for _ in range(50):
            hand = deal(rng, rule)
            assert len(hand) == 4 and is_solvable(hand, rule)
            assert rule == "id" or max(hand) > 10
    assert len(deal(rng, "id", n_cards=3, target=10)) == 3
    with pytest.raises(ValueError):
        deal(rng, "id", target=10**6, n_cards=1)


def _faces(hand) -> int:
    return sum(rank > 10 for rank in hand)


def test_ood_deal_follows_the_reference_distribution():
    """Reference OOD deal: three ranks uniform over A..K and one over J..K, shuffled, redrawn until
    solvable. Its exact share of hands with two or more face cards is compared with 2,000 seeded deals
    (fixed seed: no flakiness; the tolerance is about 3 standard errors)."""
    solvable = [
        (*ranks, face)
        for ranks in itertools.product(range(1, 14), repeat=3)
        for face in (11, 12, 13)
        if is_solvable((*ranks, face), "ood")
    ]
    reference = Fraction(sum(_faces(h) >= 2 for h in solvable), len(solvable))
    assert reference == Fraction(2428, 4815)  # about 0.504
    uniform = [h for h in itertools.product(range(1, 14), repeat=4) if _faces(h) and is_solvable(h, "ood")]
    uniform_with_face = Fraction(sum(_faces(h) >= 2 for h in uniform), len(uniform))
    assert uniform_with_face == Fraction(4509, 14057)  # about 0.321
    rng = random.Random(2024)
    hands = [deal(rng, "ood") for _ in range(2000)]
    share = sum(_faces(h) >= 2 for h in hands) / len(hands)
    assert abs(share - reference) < 0.035 and share > uniform_with_face + 0.1
    assert all(_faces(h) >= 1 for h in hands)
    assert sum(h[-1] > 10 for h in hands) < 0.8 * len(hands)  # the face card is shuffled into place


@FAST
@given(seed=st.integers(0, 10**6), rule=RULE_NAMES)
def test_deal_property(seed, rule):
    hand = deal(random.Random(seed), rule)
    assert hand == deal(random.Random(seed), rule)
    assert is_solvable(hand, rule) and (rule == "id" or any(r > 10 for r in hand))


# --- formats ---------------------------------------------------------------------------------------

PAPER_PROMPT_ID = """
[Task Description]
You are an expert 24 points card game player. You will receive a set of 4 cards.
Note that 'J', 'Q', and 'K' count as '10'., and each card must be used once.
Your goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.

[Input]
Cards: ['7', 'J', '3', '10']

[Output]
{
  "cards": [x, y, z, w], where 'J', 'Q', and 'K' count as '10'.,
  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,
  "formula": 'an equation that equals 24',
}

"""

PAPER_PROMPT_OOD = """
[Task Description]
You are an expert 24 points card game player. You will receive a set of 4 cards.
Note that 'J', 'Q', and 'K' count as '11', '12', and '13' respectively., and each card must be used once.
Your goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.

[Input]
Cards: ['A', 'K', '5', 'Q']

[Output]
{
  "cards": [x, y, z, w], where 'J', 'Q', and 'K' count as '11', '12', and '13' respectively.,
  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,
  "formula": 'an equation that equals 24',
}

"""


def test_paper_prompt_is_the_reference_text():
    assert prompt((7, 11, 3, 10), "id") == PAPER_PROMPT_ID
    assert prompt((1, 13, 5, 12), "ood") == PAPER_PROMPT_OOD
    assert prompt((1, 13, 5, 12), "ood", style="paper") == messages((1, 13, 5, 12), "ood")[0]["content"]


def test_paper_prompt_other_sizes():
    five = prompt((7, 11, 3, 10, 1), "id")
    assert "a set of 5 cards." in five and "Cards: ['7', 'J', '3', '10', 'A']" in five
    assert '"cards": [x, y, z, w, v], where' in five
    assert '"number": [a, b, c, d, e], where a, b, c, d, and e are the numbers on the cards,' in five
    assert '"number": [a, b], where a and b are the numbers on the cards,' in prompt((2, 12), "id", 12)
    for hand in [(7,), (1,) * 13]:
        with pytest.raises(ValueError, match="2 to 12 cards"):
            prompt(hand, "id")
        assert prompt(hand, "id", style="compact").startswith("J = 10")


def test_prompts():
    text = prompt(HAND, "ood", target=10)
    assert "expert 10 points card game player" in text and "equals 10" in text and "24" not in text
    assert "'J', 'Q', and 'K' count as '11', '12', and '13' respectively., and each card" in text
    assert "Cards: ['7', '5', 'J', '2']" in text
    assert '"number": [a, b, c, d], where a, b, c, and d are the numbers on the cards' in text
    assert prompt(HAND, "ood", style="compact") == "J = 11 Q = 12 K = 13 ; target 24 ; cards 7 5 J 2"
    assert prompt((1, 13), "id", 5, "compact") == "J = 10 Q = 10 K = 10 ; target 5 ; cards A K"
    assert messages(HAND, "id") == [{"role": "user", "content": prompt(HAND, "id")}]
    with pytest.raises(ValueError):
        prompt(HAND, "id", style="verbose")


def test_answers():
    assert answer(HAND, "ood", "(7-5)*11+2") == json_reply("(7-5)*11+2=24")
    assert (
        answer(HAND, "ood", "(7-5)*11+2", style="compact") == "numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 = 24"
    )
    assert (
        answer((3, 3, 8, 8), "id", "8/(3-8/3)", style="compact")
        == "numbers 3 3 8 8 ; 8 / 3 = 8/3 ; 3 - 8/3 = 1/3 ; 8 / 1/3 = 24"
    )
    assert answer(HAND, "ood", "2-(5-7)*11", style="compact").endswith("5 - 7 = -2 ; -2 * 11 = -22 ; 2 - -22 = 24")
    with pytest.raises(ValueError):
        answer(HAND, "ood", "(7-5)*11+3")
    with pytest.raises(ValueError):
        answer(HAND, "id", "(7-5)*11+2")  # 11 is not a card value under the ID rule


def test_solution_steps():
    F = Fraction
    assert solution_steps("8/(3-8/3)=24") == [(8, "/", 3, F(8, 3)), (3, "-", F(8, 3), F(1, 3)), (8, "/", F(1, 3), 24)]
    assert solution_steps("2+3*4") == [(3, "*", 4, 12), (2, "+", 12, 14)]
    for bad in ("2+", "2/(3-3)", "2**3"):
        with pytest.raises(ValueError):
            solution_steps(bad)


def test_parse_formats():
    assert parse(json_reply("(7-5)*11+2=24")) == Answer(
        "(7-5)*11+2=24", ["7", "5", "J", "2"], ["7", "5", "11", "2"], None, "json"
    )
    lenient = parse("""{'cards': ['7', '5', 'J', '2'], 'number': [7, 5, 11, 2], 'formula': '(7-5)*11+2=24',}""")
    assert (lenient.format, lenient.formula, lenient.numbers) == ("lenient", "(7-5)*11+2=24", ["7", "5", "11", "2"])
    assert parse("“formula”: “(7-5)*11+2”").formula == "(7-5)*11+2"
    assert parse("So: 2*11+7-5 = 24.").formula == "2*11+7-5"
    assert parse("  (7-5)*11+2 ").formula == "(7-5)*11+2"
    steps = parse("numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22")
    assert (steps.format, steps.numbers, steps.steps) == ("steps", ["7", "5", "11", "2"], ["7 - 5 = 2", "2 * 11 = 22"])
    assert parse("7-5=2\n2*11=22").steps == ["7-5=2", "2*11=22"]
    assert parse("hello").format == parse("").format == "none"


@pytest.mark.parametrize(
    "reply",
    [
        '{"cards": ["10", "6", "3", "7"], "number": [10, 6, 3, 7], "formula": "10+6/(3/7)’*0=24",}',  # not JSON
        "'formula': '10+6/(3/7)”*0=24'",
        '“formula”: “10+6/(3/7)"*0”',
    ],
)
def test_a_formula_is_judged_as_written_never_by_a_prefix(reply):
    """Another quote character inside a quoted formula does not end it: 10+6/(3/7) before it is a solution
    of 10 6 3 7, the formula as written is not."""
    assert parse(reply).formula.split("=")[0].endswith("*0")
    verdict = verify(reply, (10, 6, 3, 7), "id")
    assert verdict.category == "illegal_formula" and not verdict.correct


RIGHT, WRONG = "(7-5)*11+2", "7+5+11+2"  # 24 and 25 with the cards 7 5 J 2 under the OOD rule
STEPS_RIGHT = "numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 = 24"
STEPS_WRONG = "numbers 7 5 11 2 ; 7 + 5 = 12 ; 12 + 11 = 23 ; 23 + 2 = 25"


@pytest.mark.parametrize("first, second", [(RIGHT, WRONG), (WRONG, RIGHT)])
@pytest.mark.parametrize(
    "layout",
    [
        '{{"formula": "{}"}}\n{{"formula": "{}"}}',  # two JSON objects: not one object, so the first key
        '{{"formula": "{}", "formula": "{}"',  # no closing brace: not JSON, read leniently
        "formula: {}\nformula: {}",
        "'formula': '{}=24', or else 'formula': '{}=24'",
        "So {} = 24. Or {} = 24.",
        "{}=24\n{}=24",
    ],
)
def test_two_formula_answers_are_judged_by_the_first(first, second, layout):
    reply = layout.format(first, second)
    assert parse(reply).formula.split("=")[0] == first, reply
    assert verify(reply, HAND, "ood").correct == (first == RIGHT)


@pytest.mark.parametrize("first, second", [(STEPS_RIGHT, STEPS_WRONG), (STEPS_WRONG, STEPS_RIGHT)])
@pytest.mark.parametrize("sep", [" ; ", "\n", "\n\n"])
def test_two_steps_answers_are_judged_by_the_first(first, second, sep):
    reply = first + sep + second
    assert parse(reply).steps == parse(first).steps
    assert verify(reply, HAND, "ood").category == ("correct" if first == STEPS_RIGHT else "no_solution")


def test_two_answers_lists_and_single_json_object():
    reply = "number: [7, 5, 11, 2]\nformula: 7+5+11+2\nnumber: [7, 5, 10, 2]\nformula: (7-5)*11+2"
    assert parse(reply).numbers == ["7", "5", "11", "2"] and parse(reply).formula == "7+5+11+2"
    one = 'Answer: {"cards": ["7", "5", "J", "2"], "number": [7, 5, 11, 2], "formula": "(7-5)*11+2=24"} done'
    assert parse(one).format == "json" and verify(one, HAND, "ood").correct


# --- verify: hand-checked --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, hand, rule, category, message",
    [
        ("8/(3-8/3)", (8, 3, 8, 3), "id", "correct", "the formula is correct."),
        ('{"formula": " ( 7 - 5 ) * 11\\n + 2 = 24 "}', HAND, "ood", "correct", None),
        ("formula: (7-5)*11+2=23", HAND, "ood", "correct", None),  # the tail is ignored
        ("formula: (7 − 5) × 11 + 2", HAND, "ood", "correct", None),
        ("formula: 11×2÷1+7", (1, 2, 11, 7), "ood", "no_solution", "the formula evaluates to 29, not 24."),
        ("formula: 11×2÷1+7-5", (1, 2, 11, 7), "ood", "wrong_numbers", None),  # 5 is not a card
        ("formula: (7-5)*11+3", (7, 5, 11, 3), "ood", "no_solution", "the formula evaluates to 25, not 24."),
        (
            "formula: (7-5)*11+6",
            HAND,
            "ood",
            "wrong_numbers",
            "the formula uses 6, which is not one of the card values [7, 5, 11, 2].",
        ),
        (
            "formula: (7-7)*11+2",
            HAND,
            "ood",
            "wrong_numbers",
            "the formula uses 7 more often than the card values [7, 5, 11, 2] allow.",
        ),
        ("formula: 7*5-11", HAND, "ood", "wrong_numbers", "the formula does not use the card value 2."),
        ("formula: 7*5", HAND, "ood", "wrong_numbers", "the formula does not use the card values 2 and 11."),
        ("formula: (7-5)*11+", HAND, "ood", "wrong_numbers", "the formula does not use the card value 2."),
        ("formula: (7-5)*11", HAND, "ood", "wrong_numbers", None),
        ("formula: 7", HAND, "ood", "wrong_numbers", "the formula does not use the card values 2, 5 and 11."),
        ('{"formula": "11"}', HAND, "ood", "wrong_numbers", None),
        ("formula: ((7-5)*11+2", HAND, "ood", "partial", "the formula lacks only its closing parentheses."),
        ("formula: ( ( 7 - 5 ) * 11 + 2 = 24", HAND, "ood", "partial", None),
        ("formula: 2*(11+7-5", HAND, "ood", "illegal_formula", "the formula is incomplete."),  # closes to 26
        ("formula: 8/(3-8/3", (8, 3, 8, 3), "id", "partial", None),
        ("formula: 8/((3-8/3", (8, 3, 8, 3), "id", "partial", None),
        ("formula: 7/(5-5", (7, 5, 5), "id", "illegal_formula", "the formula is incomplete."),  # closing divides by 0
        ("formula: ((7-5)*11+3", (7, 5, 11, 3), "ood", "illegal_formula", "the formula is incomplete."),
        ("formula: (7-5)*11+2+", HAND, "ood", "illegal_formula", "the formula is incomplete."),
        ("formula: ((7-5)*11+2+", HAND, "ood", "illegal_formula", None),
        ("formula: 7/(5-5)", HAND, "ood", "wrong_numbers", None),  # card usage is checked before division by zero
        ("formula: 7*(5-5)", (7, 5, 5, 1), "id", "wrong_numbers", None),
        ("formula: 2/(5-5)*7+1", (7, 5, 5, 1), "id", "wrong_numbers", None),
        ("formula: 1/(5-5)+7*2", (7, 5, 5, 1, 2), "id", "illegal_formula", "the formula divides by zero."),
        (
            "formula: -2+(7-5)*11",
            HAND,
            "ood",
            "illegal_formula",
            "the formula has the operator '-' where a number should be.",
        ),
        ("formula: 2x11+7-5", HAND, "ood", "illegal_formula", "the formula contains 'x', which is not allowed."),
        ("formula: 2*11+7-5.0", HAND, "ood", "illegal_formula", None),
        ("formula: 2*011+7-5", HAND, "ood", "correct", None),
        ("formula: 2*0011+7-5", HAND, "ood", "illegal_formula", "the formula holds a number with more than 3 digits."),
        ("formula: 7 5", HAND, "ood", "illegal_formula", None),
        ("formula: (", HAND, "ood", "illegal_formula", "the formula holds no number."),
        ("formula: ", HAND, "ood", "unparsable", "the reply holds no formula."),
        ("I don't know.", HAND, "ood", "unparsable", "the reply holds no formula."),
    ],
)
def test_formula_verdicts(reply, hand, rule, category, message):
    verdict = verify(reply, hand, rule)
    assert verdict.category == category, verdict.message
    assert verdict.reward == getattr(Rewards(), category)
    assert message is None or verdict.message == message
    assert verdict.correct == (category == "correct")


def test_rewards_per_category():
    assert Rewards() == Rewards(5.0, 1.0, -1.0, -2.0, -3.0, -3.0)
    assert verify("formula: 7*5", HAND, "ood", rewards=Rewards(wrong_numbers=-7)).reward == -7
    assert set(CATEGORIES) == {f for f in Rewards.__dataclass_fields__}


def test_value_and_rule_following():
    verdict = verify(json_reply("(7-5)*11+2=24"), HAND, "ood")
    assert verdict.correct and verdict.value == 24 and verdict.numbers_follow_rule is True
    assert verify(json_reply("(7-5)*11+2", (7, 5, 10, 2)), HAND, "ood").numbers_follow_rule is False
    assert verify(json_reply("(7-5)*11+2", (2, 11, 5, 7)), HAND, "ood").numbers_follow_rule is True
    assert verify(json_reply("(7-5)*10+2", (7, 5, 10, 2)), HAND, "id").numbers_follow_rule is True
    assert verify("formula: (7-5)*11+2", HAND, "ood").numbers_follow_rule is None
    assert verify("formula: 8/(3-8/3)+1", (8, 3, 8, 3, 1), "id").value == 25


@pytest.mark.parametrize(
    "reply, category, message",
    [
        ("numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 = 24", "correct", "the steps are correct."),
        ("7-5=2\n2*11=22\n22+2=24", "correct", None),
        ("numbers 7 5 11 2 ; 11 × 2 = 22 ; 7 − 5 = 2 ; 22 + 2 = 24", "correct", None),
        ("numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22", "wrong_numbers", "the steps leave 2 and 22 unused."),
        ("numbers 7 5 11 2 ; 7 - 5 = 2", "wrong_numbers", "the steps leave 2, 2 and 11 unused."),
        ("numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 =", "partial", "step 3 lacks only its result."),
        ("numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2", "partial", None),
        ("7-5=2\n2*11=22\n22+2=", "wrong_numbers", None),  # without a head, only complete steps are steps
        (
            "numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 * 2 =",
            "illegal_formula",
            "step 3 is not of the form 'a op b = c'.",
        ),
        ("numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11", "wrong_numbers", "the steps leave 2 unused."),
        ("numbers 7 5 11 2 ; 7 - 5 =", "wrong_numbers", "the steps leave 2 and 11 unused."),
        ("numbers 7 5 11 2 ; 7 - 5 ; 2 * 11 = 22", "illegal_formula", "step 1 is not of the form 'a op b = c'."),
        ("numbers 7 5 11 2 ; 22 + 2 =", "wrong_numbers", None),
        ("numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 - 2 = 0 ; 11 / 0", "illegal_formula", "step 3 divides by zero."),
        ("numbers 7 5 11 2 ; 7 + 5 = 12 ; 12 * 11 = 132", "wrong_numbers", None),
        ("numbers 7 5 11 2 ; 7 - 5 = 3", "no_solution", "step 1 states 7 - 5 = 3, but 7 - 5 = 2."),
        (
            "numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 5 = 27",
            "wrong_numbers",
            "step 3 uses 5, which is neither an unused card value nor an unused result.",
        ),
        (
            "numbers 7 5 11 2 ; 7 + 5 = 12 ; 12 * 2 = 24 ; 24 / 11 = 24/11",
            "no_solution",
            "the steps end at 24/11, not 24.",
        ),
        ("numbers 7 5 11 2 ; 7 - 5 = 2 ; two times 11", "illegal_formula", "step 2 is not of the form 'a op b = c'."),
        ("numbers 7 5 11 2 ; 7 / 1/0 = 2", "illegal_formula", None),
        ("numbers 7 5 11 2", "unparsable", "the reply holds no formula."),
    ],
)
def test_steps_verdicts(reply, category, message):
    verdict = verify(reply, HAND, "ood")
    assert verdict.category == category, verdict.message
    assert message is None or verdict.message == message


def test_steps_details():
    assert verify("numbers 5 5 ; 5 - 5 = 0 ; 5 / 0 = 0", (5, 5, 5), "id", target=0).message == "step 2 divides by zero."
    exact = verify("numbers 8 3 8 3 ; 8 / 3 = 8/3 ; 3 - 8/3 = 1/3 ; 8 / 1/3 = 24", (8, 3, 8, 3), "id")
    assert exact.correct and exact.numbers_follow_rule
    ood = verify("numbers 7 5 10 2 ; 7 - 5 = 2 ; 2 * 10 = 20", HAND, "ood")  # states J as 10 under OOD
    assert ood.numbers_follow_rule is False and ood.category == "wrong_numbers"
    assert verify("numbers 7 5 11 2 ; 7 - 5 = 3", HAND, "ood").compact == "step 1 : 7 - 5 is 2 not 3"


def test_compact_messages_are_space_separated_words():
    replies = [
        "numbers 7 5 11 2 ; 7 - 5 = 3",
        "formula: (7-5)*11+3",
        "formula: 9**9",
        "formula: 7*5",
        "?",
        "formula: 7*6",
        "numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22",
        "numbers 7 5 11 2 ; 7 + 5 = 12 ; 12 * 11 = 132",
    ]
    for reply in replies:
        words = verify(reply, HAND, "ood").compact
        assert words and words == " ".join(words.split()) and "," not in words and not words.endswith(".")


# --- verify: hostile input ---------------------------------------------------------------------------

HOSTILE = [
    "9**9**9",
    "formula: 9**9**9",
    "__import__('os').system('true')",
    "formula: __import__('os')",
    "().__class__",
    "formula: ().__class__.__bases__",
    "1e999",
    "formula: 1e999",
    "(" * 10**6,
    "formula: " + "(" * 10**6,
    "formula: " + "(" * 500 + "7",
    "1" * 10**6,
    "=" * 10**6,
    ";" * 10**6,
    "\n" * 10**6,
    " " * 10**6,
    "formula:" * 10**5,
    "{" * 10**6 + "}",
    '{"formula": ' + "[" * 60000 + "}",
    "numbers " + "7 - 5 = 2 ; " * 10**5,
    "7 - 5 = 2\n" * 10**5,
    "formula: 7\x005",
    "\x00" * 1000,
    "formula: ٣ + ٣",
    "numbers ٣ ; ٣ + ٣ = ٦",
    "formula: 1/0",
    "formula: 7/(5-5)",
    "formula: 7/(5-5)*11+2",
    "formula: " + "9" * 10**5,
    "numbers 7 ; 9999999999999 * 9999999999 = 1",
    "formula: " + "7*" * 255 + "7",
]


@pytest.mark.parametrize("reply", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_replies_are_judged_quickly(reply):
    start = time.perf_counter()
    verdict = verify(reply, HAND, "ood")
    assert time.perf_counter() - start < 0.5
    assert verdict.category in CATEGORIES and not verdict.correct
    assert verdict.message != "the reply could not be read."


def test_hostile_random_text():
    rng = random.Random(0)
    text = "".join(rng.choice("0123456789+-*/()= ;\nnumbersformula\"':{}[],x") for _ in range(10**6))
    start = time.perf_counter()
    assert verify(text, HAND, "ood").category in CATEGORIES
    assert time.perf_counter() - start < 0.5


# --- properties ------------------------------------------------------------------------------------


@FAST
@given(hand=RANKS, rule=RULE_NAMES)
def test_every_solution_verifies_in_every_style(hand, rule):
    sols = solutions(hand, rule)
    assume(sols)
    for formula in sols:
        for style in STYLES:
            verdict = verify(answer(hand, rule, formula, style=style), hand, rule)
            assert verdict.correct and verdict.reward == 5 and verdict.value == 24, (formula, style, verdict)
            assert verdict.numbers_follow_rule is True


@FAST
@given(hand=RANKS, rule=RULE_NAMES, data=st.data())
def test_foreign_number_is_wrong_numbers(hand, rule, data):
    sols = solutions(hand, rule)
    assume(sols)
    formula = data.draw(st.sampled_from(sols))
    values = get_rule(rule).values(hand)
    numbers = list(re.finditer(r"\d+", formula))
    target = data.draw(st.sampled_from(numbers))
    foreign = data.draw(st.integers(0, 99).filter(lambda v: v not in values))
    changed = formula[: target.start()] + str(foreign) + formula[target.end() :]
    assert verify(f"formula: {changed}", hand, rule).category == "wrong_numbers"


def _formula_forms(text: str) -> list[str]:
    return [text, f"formula: {text}", json.dumps({"formula": text})]


@FAST
@given(hand=RANKS, rule=RULE_NAMES, data=st.data())
def test_no_reply_leaving_a_number_unused_beats_no_solution(hand, rule, data):
    """Single card values and every prefix of a solution that stops before its last number, in both
    styles, earn at most no_solution: partial needs every card."""
    sols = solutions(hand, rule)
    assume(sols)
    formula = data.draw(st.sampled_from(sols))
    values = get_rule(rule).values(hand)
    texts = [str(v) for v in values]
    texts += [
        formula[: m.end()]
        for m in re.finditer(r"\d+|[()+\-*/]", formula)
        if len(re.findall(r"\d+", formula[: m.end()])) < len(values)
    ]
    replies = [reply for text in texts for reply in _formula_forms(text)]
    words = answer(hand, rule, formula, style="compact").split()  # ... ; a op b = c
    replies += [" ".join(words[:k]) for k in range(1, len(words) - 2)]  # up to the last step's operator
    for reply in replies:
        verdict = verify(reply, hand, rule)
        assert verdict.reward <= Rewards().no_solution and verdict.category != "partial", (reply, verdict)


@FAST
@given(hand=RANKS, rule=RULE_NAMES, data=st.data())
def test_solutions_missing_only_closing_parentheses_or_the_last_result_are_partial(hand, rule, data):
    sols = solutions(hand, rule)
    assume(sols)
    formula = data.draw(st.sampled_from(sols))
    unclosed = ["(" + formula, "((" + formula + ")", formula.rstrip(")") if formula.endswith(")") else "(((" + formula]
    for text in unclosed:
        for reply in _formula_forms(text):
            verdict = verify(reply, hand, rule)
            assert verdict.category == "partial" and verdict.reward == 1 and verdict.value == 24, reply
    assert verify(f"formula: ({formula}+", hand, rule).category == "illegal_formula"
    compact = answer(hand, rule, formula, style="compact")
    assert compact.endswith(" = 24")
    for reply in (compact[:-3], compact[:-5]):  # "... a op b =" and "... a op b"
        assert verify(reply, hand, rule).category == "partial", reply


def short_replies(values) -> list[str]:
    """Every card value alone, every one-step answer over the card values (formula and steps forms,
    with and without its result), empty and garbage replies."""
    head = "numbers " + " ".join(map(str, values))
    replies = [
        "",
        " ",
        "?",
        "I don't know.",
        "formula:",
        "{}",
        '{"formula": ""}',
        "24",
        "= 24",
        "numbers",
        head,
        ";",
        "(((",
        ")",
        "+",
        "x" * 40,
        "\x00",
        "formula: 24",
        "numbers 24 ; 24",
        "Answer: 24",
    ]
    for v in sorted(set(values)):
        replies += [*_formula_forms(str(v)), f"({v}", f"{head} ; {v}", f"{v} = {v}"]
    for a, b in sorted(set(itertools.permutations(values, 2))):
        for op in "+-*/":
            step = f"{a} {op} {b}"
            replies += [*_formula_forms(step), f"({step}", f"{head} ; {step}", f"{head} ; {step} ="]
            c = apply(Fraction(a), op, Fraction(b))
            if c is not None:
                replies += [f"{step} = {c}", f"{head} ; {step} = {c}", *_formula_forms(f"{step} = {c}")]
    return list(dict.fromkeys(replies))


@pytest.mark.parametrize("rule", ["id", "ood"])
def test_no_constant_short_reply_earns_as_much_as_a_first_attempt_solve(rule):
    """For 100 seeded hands, the best reply of the short corpus, repeated for all 5 attempts of an
    Episode, totals strictly less than a first-attempt solve (+5)."""
    rng = random.Random(11)
    for _ in range(100):
        hand = deal(rng, rule)
        rewards = {reply: verify(reply, hand, rule).reward for reply in short_replies(get_rule(rule).values(hand))}
        best = max(rewards, key=lambda reply: rewards[reply])
        assert rewards[best] <= Rewards().no_solution, (hand, best)
        episode = Episode(hand, rule)
        while not episode.done:
            episode.step(best)
        assert episode.attempts == 5 and sum(episode.rewards) < Rewards().correct, (hand, best, episode.rewards)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=2000))
def test_random_bytes_never_raise(blob):
    verdict = verify(blob.decode("utf-8", errors="replace"), HAND, "ood")
    assert verdict.category in CATEGORIES and verdict.message != "the reply could not be read."


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.sampled_from([*list("0123456789+-*/()=;. \n×÷−x\"'{}[]:,"), "formula", "numbers"]), max_size=100)
)
def test_formula_like_text_never_raises(pieces):
    text = "".join(pieces)
    verdict = verify(text, HAND, "ood")
    assert verdict.category in CATEGORIES and verdict.message != "the reply could not be read."
    assert isinstance(parse(text), Answer)


# --- episode ---------------------------------------------------------------------------------------


def test_episode_success_on_third_attempt():
    episode = Episode(HAND, "ood")
    assert episode.messages == messages(HAND, "ood") and not episode.done
    first = episode.step(json_reply("(7-5)*11+3"))
    assert first.category == "wrong_numbers" and episode.messages[-1] == {
        "role": "user",
        "content": FEEDBACK.format(message=first.message),
    }
    assert episode.messages[-1]["content"] == (
        "You failed this trial because the formula uses 3, which is not one of the card values [7, 5, 11, 2]."
    )
    episode.step("no idea")
    last = episode.step(json_reply("(7-5)*11+2=24"))
    assert last.correct and episode.done and episode.success and episode.attempts == 3
    assert episode.rewards == [-2.0, -3.0, 5.0]
    roles = [m["role"] for m in episode.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    with pytest.raises(RuntimeError, match="over"):
        episode.step("again")


def test_a_strict_layout_counts_only_the_tasks_own_answer_layout():
    """The compact task's layout opens with the numbers field; under a strict layout right steps without
    it, a formula or JSON are unparsable ("no numbers"), a right answer in the layout is correct."""
    right = "numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 = 24"
    for reply in ("7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 = 24", "(7-5)*11+2", '{"formula": "(7-5)*11+2=24"}'):
        assert verify(reply, HAND, "ood").correct
        strict = verify(reply, HAND, "ood", layout="compact")
        assert (strict.category, strict.compact, strict.reward) == ("unparsable", "no numbers", -3.0)
    assert verify(right, HAND, "ood", layout="compact").correct
    assert verify("numbers 7 5 10 2 ; 7 - 5 = 2", HAND, "ood", layout="compact").category == "wrong_numbers"
    episode = Episode(HAND, "ood", style="compact", max_attempts=2, strict_layout=True)
    episode.step("7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 = 24")
    assert episode.messages[-1]["content"] == "fail ; no numbers" and episode.step(right).correct
    with pytest.raises(ValueError, match="no strict layout for the 'paper' style"):
        verify(right, HAND, "ood", layout="paper")
    with pytest.raises(ValueError, match="no strict layout for the 'paper' style"):
        Episode(HAND, "ood", style="paper", strict_layout=True)
    assert cards.in_answer_layout(right, "steps_only") == "7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 = 24"
    assert cards.in_answer_layout(right, "task") == right


def test_episode_max_attempts_and_compact_feedback():
    episode = Episode(HAND, "ood", style="compact", max_attempts=2)
    assert episode.messages[0]["content"] == "J = 11 Q = 12 K = 13 ; target 24 ; cards 7 5 J 2"
    episode.step("numbers 7 5 11 2 ; 7 - 5 = 3")
    assert episode.messages[-1]["content"] == "fail ; step 1 : 7 - 5 is 2 not 3"
    episode.step("numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 =")
    assert episode.done and not episode.success and episode.messages[-1]["role"] == "assistant"
    assert len(episode.messages) == 4 and episode.rewards == [-1.0, 1.0]
    with pytest.raises(RuntimeError):
        episode.step("x")
    assert feedback(episode.verdicts[1], "compact") == "fail ; incomplete"
    assert feedback(verify("numbers 7 5 11 2 ; 7 - 5 = 2", HAND, "ood"), "compact") == "fail ; unused 2 2 11"
