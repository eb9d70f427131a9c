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
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_bundle / "llm" / "tokenizer.json"))


def test_a_user_dimension_file_parses_and_resolves_single_tokens(tokenizer):
    dims = parse_dimensions(GOOD, tokenizer)
    assert list(dims) == ["sharpness", "match"]
    s = dims["sharpness"]
    assert [tokenizer.decode([i]) for i in s.level_token_ids] == [" good", " fair", " bad"]
    assert not s.requires_prompt and dims["match"].requires_prompt
    assert dims["match"].scale_min == 1.0 and dims["match"].scale_max == 2.0  # default scale: 1..len(levels)
    np.testing.assert_allclose(s.level_values, [10.0, 5.0, 0.0])
    # Round trip through the writer keeps everything, ids included.
    again = parse_dimensions(render_dimensions(list(dims.values())), tokenizer)
    assert again == dims


def test_scoring_is_the_expected_value_of_the_level_softmax(tokenizer):
    d = parse_dimensions(GOOD, tokenizer)["sharpness"]
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
    (GOOD.replace('levels = ["excellent", "poor"]', 'levels = ["excellent", "poor"]\nlevel_token_ids = [1, 2]'),
     "another tokenizer"),
    ("[[dimension]\n", "not valid TOML"),
    ("title = 'x'\n", "one or more"),
])
def test_mistakes_are_named(tokenizer, text, needle):
    with pytest.raises(DimensionFileError, match=needle):
        parse_dimensions(text, tokenizer)
