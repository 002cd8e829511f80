"""The reference verifier's feedback text (sftrl.cards.reference): each expected message below is what the
authors' `utils_rl.step_rewards`, called as their environment calls it, returns for the reply."""

import pytest

from sftrl import cards
from sftrl.cards.reference import (
    extract_formula,
    python_value,
    reference_feedback,
    reference_message,
    reference_solutions,
)
from sftrl.config import TaskConfig

HAND = (7, 5, 11, 2)  # under the OOD rule: 7 5 11 2

CASES = [
    ('{"formula": "7+5+11+2=25"}', "7+ is partially correct but the full formula does not match any solution."),
    ('{"formula": "(7-5)*11+3=24"}', "you used invalid numbers: [3], you didn't use numbers: [2]."),
    ('{"formula": "(7-5)*10+2=24"}', "you used invalid numbers: [10], you didn't use numbers: [11]."),
    ('{"formula": "(7-5)*11=22"}', "you didn't use numbers: [2]."),
    ('{"formula": "(7 - 5)*11+2=24"}', "illegal characters."),  # spaces are illegal characters there
    (
        "{\n  \"cards\": ['7', '5', 'J', '2'],\n  \"formula\": \"((7-5)*11+2\",\n}",
        "( is partially correct but the full formula does not match any solution.",
    ),
    ('{\n  "formula": "(7-5)*11+2)",\n}', "unmatched closing parenthesis."),
    ("I think 7*5 works", "illegal characters."),  # no formula field: the string None
    ('{"formula": "7+7+11+2"}', "you used numbers: [7] too many times, you didn't use numbers: [5]."),
    ('{"formula": "2*11+5-7"}', "2*11+ is partially correct but the full formula does not match any solution."),
    ('{"formula": "(7-5)*11+2/0"}', "you used invalid numbers: [0]."),
    ('{"formula": "+7-5*11+2"}', "invalid sequence after operator."),
    ('{"formula": "(7-5)*11+2=24"}', "Correct solution."),
]


@pytest.mark.parametrize("reply, message", CASES)
def test_messages_are_the_reference_verifiers(reply, message):
    assert reference_message(reply, HAND, "ood") == message


def test_a_float_near_miss_gets_the_reference_empty_message():
    """eval gives 8/(3-8/3) = 23.999999999999996: not correct there, every prefix a stored solution's, so
    the message is the lone period (this workflow's verifier calls the formula correct)."""
    assert reference_message('{"formula": "8/(3-8/3)=24"}', (8, 3, 8, 3), "id") == "."
    assert python_value(["8", "/", "(", "3", "-", "8", "/", "3", ")"]) == 8 / (3 - 8 / 3)
    assert cards.verify('{"formula": "8/(3-8/3)=24"}', (8, 3, 8, 3), "id").correct


def test_what_eval_would_refuse_takes_the_exception_branch():
    # a leading zero is a SyntaxError for eval, so a formula that is a stored solution's prefix is "partial"
    assert reference_message('{"formula": "(07-5)*11+2"}', HAND, "ood").startswith("( is partially")
    assert reference_message('{"formula": "(7-5)*11+2/(5-5"}', HAND, "ood") == "you used numbers: [5] too many times."


def test_the_reference_solutions_are_its_solvers_strings():
    solutions = reference_solutions((2, 5, 7, 11), 24)
    assert "(7-5)*11+2" in solutions and "2*11+7-5" in solutions
    assert not any(s.startswith("((") for s in solutions)  # its bracket list never opens twice
    assert reference_solutions((2, 5, 7, 11), 24) is reference_solutions((2, 5, 7, 11), 24)  # cached


def test_the_formula_is_read_as_the_reference_reads_it():
    assert extract_formula('{"formula": "1+2=3"}') == "1+2"
    assert extract_formula('x "formula": "1+2=3", y') == "1+2"
    assert extract_formula("formula: 1+2") == "None"  # only the exact key with double quotes
    assert extract_formula('{"formula": 12}') == "12"


@pytest.mark.parametrize("reply", ["", "x" * 100_000, '{"formula": "' + "(" * 5000 + '"}', "9**9**9", None])
def test_hostile_replies_get_a_message_quickly(reply):
    assert reference_message(reply, HAND, "ood").endswith(".")


def test_an_episode_speaks_the_reference_feedback():
    episode = cards.Episode(HAND, "ood", style="paper", feedback_text="reference")
    verdict = episode.step('{"formula": "(7-5)*11=22"}')
    assert verdict.category == "wrong_numbers" and verdict.reward == -2  # this verifier's reward
    assert episode.messages[-1]["content"] == "You failed this trial because you didn't use numbers: [2]."
    assert reference_feedback('{"formula": "(7-5)*11=22"}', HAND, "ood") == episode.messages[-1]["content"]
    own = cards.Episode(HAND, "ood", style="paper")
    own.step('{"formula": "(7-5)*11=22"}')
    assert own.messages[-1]["content"] == "You failed this trial because the formula does not use the card value 2."


def test_reference_feedback_needs_the_paper_style():
    assert TaskConfig(style="paper", feedback="reference").feedback == "reference"
    with pytest.raises(ValueError, match=r"task.feedback reference.*task.style 'compact'"):
        TaskConfig(style="compact", feedback="reference")
    with pytest.raises(ValueError, match=r"task.feedback 'verbatim'"):
        TaskConfig(feedback="verbatim")
