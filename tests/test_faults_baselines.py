"""Bad LLM replies and bad baseline params (issue 14): every grade / tag / index fault is a ParseError (asked
again, then a counted failure), never a silently wrong value."""
from __future__ import annotations

import pytest

import crowdselect_lib as cs
from crowdselect_lib import baselines as B

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("reply, message", [
    ("Rating: -3", "grade -3 is outside 0..5"),                  # not 3
    ("-1", "grade -1 is outside 0..5"),                          # not 1
    ("5/10", "grade 5/10 is on another scale"),                  # not 5
    ("7 out of 10", "on another scale"),
    ("6", "grade 6 is outside 0..5"),
    ("Out of 5, I would give it 3.", "no grade on the first line"),   # not 5
    ("Qwen2.5-3B-Instruct answers well: 4/5", "no grade on the first line"),
    ("", "the reply is empty"),
    ("I cannot grade this.", "no grade on the first line"),
])
def test_bad_grades_are_parse_errors(reply, message):
    with pytest.raises(B.ParseError, match=message):
        B.parse_grade(reply)


def test_grade_labelled_with_its_scale_reads_the_grade_not_the_scale():
    assert B.parse_grade("Grade (0-5): 4") == 4.0                  # not 0


@pytest.mark.parametrize("reply, message, truncated", [
    ('[["a"], "b"]', "item 1 of the list is list", False),        # "b" is never silently dropped
    ('["a", 3]', "item 2 of the list is int", False),
    ("[]", "the list of tags is empty", False),
    ("cooking, advice", "no JSON list of tags", False),
    ('[{"tag": "math", "explanation": "a long expl', "cut off", True),
    ('[{"tag": "math"}, oops]', "not valid JSON", False),
])
def test_bad_tag_replies_are_parse_errors(reply, message, truncated):
    with pytest.raises(B.ParseError, match=message) as e:
        B.parse_tags(reply)
    assert isinstance(e.value, B.Truncated) is truncated


def test_official_labels_reject_unknown_labels():
    with pytest.raises(B.ParseError, match="label 'peanut' is not in the list"):
        B.parse_official_labels("writing, peanut")


def test_truncated_tag_replies_are_counted_not_dropped_silently():
    llm_reply = '[{"tag": "a", "explanation": "x"}, {"tag": "b", "expl'
    out = B.ask_with_retries(_Fake(llm_reply), [[{"role": "user", "content": "q"}]], B.parse_tags,
                             cs.llm.GenerationSettings(), max_retries=1)
    assert out["truncated"].tolist() == [True] and out["error"].iloc[0].startswith("the list of tags is cut off")
    assert B.llm_report("instag", out)["truncated"] == 1


@pytest.mark.parametrize("reply, message", [
    ("I pick the second one", "no bracketed list"),
    ("[2, x]", "no bracketed list of numbers"),
    ("[0, 2]", "number 0 is out of range 1..4"),
    ("[2, 2]", "repeats a number"),
    ("[1, 2, 3]", "exactly 2 are required"),
])
def test_bad_selectllm_replies(reply, message):
    with pytest.raises(B.ParseError, match=message):
        B.parse_indices(reply, 4, 2)


@pytest.mark.parametrize("key, value, message", [
    ("baselines.llm_subset", 0, "baselines.llm_subset: must be positive"),
    ("baselines.subset_k", -1, "baselines.subset_k: must be positive"),
    ("baselines.ifd_max_length", 0, "baselines.ifd_max_length: must be positive"),
    ("baselines.llm_max_retries", -1, "baselines.llm_max_retries: must be >= 0"),
    ("baselines.ifd_pre_percentiles", [75.0, 25.0], "baselines.ifd_pre_percentiles"),
    ("baselines.length_pairing", "longest", "baselines.length_pairing"),
])
def test_bad_baseline_params_fail_at_load_time(key, value, message):
    with pytest.raises(cs.ConfigError, match=message):
        cs.load_config(None, {key: value})


class _Fake:
    name = "fake"

    def __init__(self, reply):
        self.reply = reply

    def chat(self, conversations, settings=None):
        return [self.reply] * len(conversations)
