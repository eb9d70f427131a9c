import numpy as np
import pytest

from vidjudge.server.dimensions import DimensionFileError, parse_dimensions, render_dimensions

GOOD = """
[[dimension]]
name = "sharpness"
question = "How sharp is this video?"
answer_prefix = "The sharpness of the video is"
levels = ["good", "fair", "bad"]
scale = [0.0, 10.0]

[[dimension]]
name = "match"
question = "Does it match {prompt}?"
answer_prefix = "The match is"
levels = ["excellent", "poor"]
"""


@pytest.fixture(scope="module")
def tokenizer(tiny_bundle):
    from vidjudge.server.families.qwen2_5_vl import HfJsonTokenizer

    return HfJsonTokenizer(tiny_bundle / "llm")


def test_a_user_dimension_file_parses_and_resolves_single_tokens(tokenizer):
    dims = parse_dimensions(GOOD, tokenizer.encode)
    assert list(dims) == ["sharpness", "match"]
    s = dims["sharpness"]
    assert [tokenizer.decode([i]) for i in s.level_token_ids] == [" good", " fair", " bad"]
    assert not s.requires_prompt and dims["match"].requires_prompt
    assert dims["match"].scale_min == 1.0 and dims["match"].scale_max == 2.0  # default scale: 1..len(levels)
    np.testing.assert_allclose(s.level_values, [10.0, 5.0, 0.0])
    # Round trip through the writer keeps everything, ids included.
    again = parse_dimensions(render_dimensions(list(dims.values())), tokenizer.encode)
    assert again == dims


def test_scoring_is_the_expected_value_of_the_level_softmax(tokenizer):
    d = parse_dimensions(GOOD, tokenizer.encode)["sharpness"]
    score, p = d.score(np.log([0.5, 0.25, 0.25]) - 3.0)  # any constant offset (full-vocab log-probs)
    np.testing.assert_allclose(p, [0.5, 0.25, 0.25])
    assert score == pytest.approx(0.5 * 10 + 0.25 * 5)
    score, _ = d.score(np.array([0.0, -100.0, -100.0]))
    assert score == pytest.approx(10.0)


@pytest.mark.parametrize("text, needle", [
    (GOOD.replace('"bad"]', '"unbelievably"]'), "not a single token"),
    (GOOD.replace('name = "sharpness"', 'name = "Sharp Ness"'), "lower_snake_case"),
    (GOOD.replace("scale = [0.0, 10.0]", "scale = [5, 1]"), "min < max"),
    (GOOD.replace('levels = ["good", "fair", "bad"]', 'levels = ["good"]'), "at least two"),
    (GOOD.replace('name = "match"', 'name = "sharpness"'), "defined twice"),
    (GOOD + 'colour = "blue"\n', "unknown keys"),
    (GOOD.replace('question = "Does it match {prompt}?"', 'question = "Does it match {promt}?"'),
     r"unknown placeholder\(s\) \{promt\}"),
    (GOOD + 'head = "oracle"\n', "head 'oracle' is not one of"),
    ('[[dimension]]\nname = "r"\nhead = "regression"\nquestion = "q?"\n', "weights: Field required"),
    ('[[dimension]]\nname = "g"\nhead = "generate"\nquestion = "q?"\nscore_pattern = "Score: [1-5]"\n',
     "needs a group capturing the score"),
    ('[[dimension]]\nname = "y"\nhead = "yes_no"\nquestion = "q?"\nlevels = ["yes", "no", "maybe"]\n',
     "exactly two levels"),
    (GOOD.replace('levels = ["excellent", "poor"]', 'levels = ["excellent", "poor"]\nlevel_token_ids = [1, 2]'),
     "another tokenizer"),
    ("[[dimension]\n", "not valid TOML"),
    ("title = 'x'\n", "one or more"),
])
def test_mistakes_are_named(tokenizer, text, needle):
    with pytest.raises(DimensionFileError, match=needle):
        parse_dimensions(text, tokenizer.encode)


HEADS = r"""
[[dimension]]
name = "qa"
head = "yes_no"
question = "{question} Answer yes or no."
answer_prefix = "The answer is"

[[dimension]]
name = "mos"
head = "regression"
question = "How is the quality? {prompt}"
weights = "quality_mlp"
output_scale = 100.0
scale = [0.0, 100.0]
adapter = "perception"

[[dimension]]
name = "rated"
head = "generate"
question = "Rate it from 1 to 5, end with 'Score: N'."
score_pattern = "Score:\\s*([0-9])"
max_tokens = 32
stop = ["\n\n"]
"""


def test_every_head_declares_its_parameters_and_inputs(tokenizer):
    dims = parse_dimensions(HEADS, tokenizer.encode)
    qa, mos, rated = dims["qa"], dims["mos"], dims["rated"]
    assert (qa.head, qa.levels, qa.scale, qa.inputs) == ("yes_no", ("yes", "no"), (0.0, 1.0), ("question",))
    assert [tokenizer.decode([i]) for i in qa.level_token_ids] == [" yes", " no"]
    assert qa.render_question("", {"question": "Is it {raining}?"}) == "Is it {raining}? Answer yes or no."
    assert (mos.head, mos.weights, mos.output_scale, mos.adapter, mos.requires_prompt) == (
        "regression", "quality_mlp", 100.0, "perception", True)
    assert (rated.head, rated.max_tokens, rated.stop, rated.scale) == ("generate", 32, ("\n\n",), (1.0, 5.0))
    # The score line: the last statement on the scale wins; nothing on the scale reads as None.
    assert rated.parse("I think Score: 2.\nOn reflection, Score: 4") == 4.0
    assert rated.parse("Score: 9") is None and rated.parse("no score here") is None
    assert parse_dimensions(render_dimensions(list(dims.values())), tokenizer.encode) == dims
