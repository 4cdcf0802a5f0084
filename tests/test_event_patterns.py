"""EventBridge event patterns matched locally: the documented examples (events and patterns copied from the
EventBridge user guide — eb-event-patterns, eb-event-patterns-arrays, eb-event-patterns-null-values,
eb-event-patterns-content-based-filtering, eb-create-pattern-operators — and from aws/event-ruler's README, the
engine behind EventBridge), Engage's normalization of the spec's `[lo, hi]` range, and pattern errors with paths."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import yaml

from engage_assets.domain.config import ConfigError, ReactiveProgram, load_program, validate_program
from engage_assets.domain.events.operators import PatternError
from engage_assets.domain.events.patterns import EventPattern, compile_pattern, normalize_pattern

CART = Path(__file__).resolve().parent / "fixtures" / "abandoned-cart-recovery.yaml"

EC2_EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"},
}
AUTOSCALING_EVENT = {
    "version": "0",
    "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
    "detail-type": "EC2 Instance Launch Successful",
    "source": "aws.autoscaling",
    "account": "123456789012",
    "time": "2015-11-11T21:31:47Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"eventVersion": "", "responseElements": None},
}
MACIE_EVENT = {
    "version": "0",
    "id": "3e355723-fca9-4de3-9fd7-154c289d6b59",
    "detail-type": "Macie Alert",
    "source": "aws.macie",
    "account": "123456789012",
    "time": "2017-04-24T22:28:49Z",
    "region": "us-east-1",
    "resources": [
        "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id/alert/alert_id",
        "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id",
    ],
    "detail": {
        "notification-type": "ALERT_CREATED",
        "name": "Scanning bucket policies",
        "tags": ["Custom_Alert", "Insider"],
        "risk-score": 80,
        "trigger": {"rule-arn": "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id", "risk": 8},
    },
}
# aws/event-ruler README's sample event.
RULER_EVENT = {
    "version": "0",
    "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "012345679012",
    "time": "2017-10-02T16:24:49Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
    "detail": {
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.33",
        "instance-id": "i-000000aaaaaa00000",
        "state": "running",
    },
}


def _matches(pattern: dict, event: dict) -> bool:
    return compile_pattern(pattern).matches(event)


def _with_detail(event: dict, **detail: object) -> dict:
    changed = copy.deepcopy(event)
    changed["detail"].update(detail)
    return changed


# --- Field and value matching (eb-event-patterns) ---------------------------------------------------------------


def test_the_documented_ec2_termination_pattern():
    pattern = {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
        "detail": {"state": ["terminated"]},
    }
    assert _matches(pattern, EC2_EVENT)
    assert not _matches(pattern, _with_detail(EC2_EVENT, state="running"))
    assert not _matches(pattern, {k: v for k, v in EC2_EVENT.items() if k != "source"})  # AND: every field


def test_a_value_list_is_an_or_of_its_values():
    assert _matches({"source": ["aws.ec2", "aws.fargate"]}, EC2_EVENT)
    assert not _matches({"source": ["aws.s3", "aws.fargate"]}, EC2_EVENT)


def test_nested_value_matching_macie_example():
    pattern = {
        "source": ["aws.macie"],
        "detail-type": ["Macie Alert"],
        "detail": {"risk-score": [80], "trigger": {"risk": [8]}},
    }
    assert _matches(pattern, MACIE_EVENT)
    assert not _matches({"detail": {"trigger": {"risk": [9]}}}, MACIE_EVENT)
    assert not _matches({"detail": {"risk-score": [80], "missing": {"risk": [8]}}}, MACIE_EVENT)


def test_null_and_empty_string_are_matched_and_not_interchangeable():
    assert _matches(
        {
            "source": ["aws.autoscaling"],
            "detail-type": ["EC2 Instance Launch Successful"],
            "detail": {"responseElements": [None]},
        },
        AUTOSCALING_EVENT,
    )
    assert _matches({"detail": {"eventVersion": [""]}}, AUTOSCALING_EVENT)
    assert not _matches({"detail": {"eventVersion": [None]}}, AUTOSCALING_EVENT)
    assert not _matches({"detail": {"responseElements": [""]}}, AUTOSCALING_EVENT)
    # null matches a field holding null, not an absent field
    assert not _matches({"detail": {"absent": [None]}}, AUTOSCALING_EVENT)


def test_array_values_match_when_the_intersection_is_non_empty():
    pattern = {
        "resources": [
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f",
        ]
    }
    event = {
        "resources": [
            "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:"
            "autoScalingGroupName/ASGTerminate",
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
        ]
    }
    assert _matches(pattern, event)
    assert not _matches(pattern, {"resources": event["resources"][:1]})
    assert not _matches(pattern, {"resources": []})


def test_arrays_of_objects_match_within_one_element():
    event = {
        "employees": [
            {"firstName": "John", "lastName": "Doe"},
            {"firstName": "Anna", "lastName": "Smith"},
            {"firstName": "Peter", "lastName": "Jones"},
        ]
    }
    assert _matches({"employees": {"firstName": ["Anna"]}}, event)
    assert _matches({"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}, event)
    assert not _matches({"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}, event)
    nested = {"employees": [[event["employees"][0], event["employees"][1]], [event["employees"][2]]]}
    assert _matches({"employees": {"firstName": ["Peter"]}}, nested)


def test_literals_match_by_json_type_and_numbers_by_value():
    three_hundred = json.loads('{"detail": {"x": 3.0e2}}')
    assert _matches({"detail": {"x": [300]}}, three_hundred)
    assert _matches({"detail": {"x": [300.0]}}, {"detail": {"x": 300}})
    assert not _matches({"detail": {"x": [300]}}, {"detail": {"x": "300"}})
    assert not _matches({"detail": {"x": ["300"]}}, {"detail": {"x": 300}})
    assert not _matches({"detail": {"x": [1]}}, {"detail": {"x": True}})
    assert not _matches({"detail": {"x": [True]}}, {"detail": {"x": 1}})
    assert _matches({"detail": {"x": [False]}}, {"detail": {"x": False}})
    assert not _matches({"detail": {"x": ["true"]}}, {"detail": {"x": True}})


def test_strings_match_exactly_without_case_folding():
    assert not _matches({"source": ["AWS.EC2"]}, EC2_EVENT)
    assert not _matches({"source": ["aws.ec2 "]}, EC2_EVENT)


def test_a_leaf_list_never_matches_an_object():
    assert not _matches({"detail": [{"exists": True}]}, EC2_EVENT)
    assert _matches({"detail": [{"exists": False}]}, EC2_EVENT)


def test_matches_answers_false_for_a_non_mapping():
    pattern = compile_pattern({"source": ["aws.ec2"]})
    assert not pattern.matches([EC2_EVENT])  # type: ignore[arg-type]
    assert not pattern.matches("aws.ec2")  # type: ignore[arg-type]


# --- Content filters (eb-event-patterns-content-based-filtering, eb-create-pattern-operators) -------------------


def test_prefix_matching():
    assert _matches({"time": [{"prefix": "2017-10-02"}]}, RULER_EVENT)
    assert not _matches({"time": [{"prefix": "2017-10-03"}]}, RULER_EVENT)
    assert _matches({"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"})
    assert not _matches({"n": [{"prefix": "5"}]}, {"n": 5})  # strings only


def test_prefix_and_suffix_ignoring_case():
    assert _matches({"service": [{"prefix": {"equals-ignore-case": "eventb"}}]}, {"service": "EventBridge"})
    assert _matches({"service": [{"suffix": {"equals-ignore-case": "tbridge"}}]}, {"service": "EVENTBRIDGE"})
    assert not _matches({"service": [{"prefix": "eventb"}]}, {"service": "EventBridge"})


def test_suffix_equals_ignore_case_and_wildcard():
    assert _matches({"source": [{"suffix": "ec2"}]}, RULER_EVENT)
    assert _matches({"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.png"})
    assert _matches({"source": [{"equals-ignore-case": "AWS.EC2"}]}, RULER_EVENT)
    assert _matches({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "Alice"})
    assert _matches({"Name": ["Alice"]}, {"Name": "Alice"})
    assert _matches({"LastName": [""]}, {"LastName": ""})
    wildcard = {"source": [{"wildcard": "Simple*Service"}]}
    assert _matches(wildcard, {"source": "SimpleNotificationService"})
    assert _matches(wildcard, {"source": "SimpleService"})
    assert not _matches(wildcard, {"source": "SimpleServices"})
    assert _matches({"s": [{"wildcard": "a\\*b"}]}, {"s": "a*b"})
    assert not _matches({"s": [{"wildcard": "a\\*b"}]}, {"s": "axb"})


def test_anything_but_matching():
    assert _matches({"detail": {"state": [{"anything-but": "initializing"}]}}, RULER_EVENT)
    assert not _matches({"detail": {"state": [{"anything-but": "running"}]}}, RULER_EVENT)
    assert _matches({"detail": {"x-limit": [{"anything-but": 123}]}}, RULER_EVENT)
    assert not _matches({"detail": {"c-count": [{"anything-but": 5.0}]}}, RULER_EVENT)
    assert _matches({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}, RULER_EVENT)
    assert not _matches({"detail": {"state": [{"anything-but": ["stopped", "running"]}]}}, RULER_EVENT)
    assert _matches({"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}}, RULER_EVENT)
    assert not _matches({"detail": {"x-limit": [{"anything-but": [100, 301.8]}]}}, RULER_EVENT)
    assert _matches({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}, RULER_EVENT)
    assert not _matches({"detail": {"state": [{"anything-but": {"prefix": "run"}}]}}, RULER_EVENT)
    assert _matches({"Region": [{"anything-but": {"prefix": "us-"}}]}, {"Region": "eu-west-1"})
    assert not _matches({"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.png"})
    ignore_case = {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]}
    assert not _matches(ignore_case, {"state": "INITIALIZING"})
    assert _matches(ignore_case, {"state": "running"})
    assert not _matches({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {"FilePath": "/usr/lib/x"})
    assert _matches({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {"FilePath": "/usr/bin/x"})


def test_anything_but_needs_a_value_and_compares_by_type():
    assert not _matches({"detail": {"absent": [{"anything-but": "x"}]}}, RULER_EVENT)
    assert _matches({"x": [{"anything-but": [100]}]}, {"x": "100"})  # a string is not the number 100
    assert _matches({"x": [{"anything-but": "x"}]}, {"x": None})
    assert _matches({"x": [{"anything-but": "a"}]}, {"x": ["a", "b"]})  # any element that is not excluded
    assert not _matches({"x": [{"anything-but": "a"}]}, {"x": ["a", "a"]})


def test_numeric_matching():
    pattern = {
        "detail": {
            "c-count": [{"numeric": [">", 0, "<=", 5]}],
            "d-count": [{"numeric": ["<", 10]}],
            "x-limit": [{"numeric": ["=", 3.018e2]}],
        }
    }
    assert _matches(pattern, RULER_EVENT)
    assert not _matches(pattern, _with_detail(RULER_EVENT, **{"c-count": 6}))
    assert not _matches(pattern, _with_detail(RULER_EVENT, **{"c-count": 0}))
    assert not _matches(pattern, _with_detail(RULER_EVENT, **{"d-count": 10}))
    assert not _matches(pattern, _with_detail(RULER_EVENT, **{"c-count": "5"}))  # JSON numbers only
    assert not _matches(pattern, _with_detail(RULER_EVENT, **{"c-count": True}))
    assert _matches({"n": [{"numeric": [">=", 5]}]}, {"n": [1, 7]})  # any array element
    assert not _matches({"n": [{"numeric": [">=", 0]}]}, {"n": 6e9})  # beyond EventBridge's numeric range


def test_ip_address_matching():
    assert _matches({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}, RULER_EVENT)
    assert _matches({"detail": {"source-ip": [{"cidr": "10.0.0.0/8"}]}}, RULER_EVENT)
    assert not _matches({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}, RULER_EVENT)
    assert _matches({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::1"})
    assert not _matches({"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": "not an address"})


def test_exists_matching():
    absent = {"detail": {"c-count": [{"exists": False}]}}
    event = {
        "detail-type": ["EC2 Instance State-change Notification"],
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341"],
        "detail": {"state": ["initializing", "running"]},
    }
    assert _matches(absent, event)
    # ... and also when c-count is not a leaf node
    assert _matches(absent, _with_detail(event, **{"c-count": {"c1": 100}}))
    assert not _matches(absent, _with_detail(event, **{"c-count": 1}))
    assert _matches({"detail": {"c-count": [{"exists": True}]}}, RULER_EVENT)
    assert not _matches({"detail": {"c-count": [{"exists": True}]}}, event)
    assert _matches({"detail": {"responseElements": [{"exists": True}]}}, AUTOSCALING_EVENT)  # null is a value
    assert _matches({"nothing": {"here": [{"exists": False}]}}, event)  # no parent object either


def test_the_documented_complex_example():
    pattern = {
        "time": [{"prefix": "2017-10-02"}],
        "detail": {
            "state": [{"anything-but": "initializing"}],
            "c-count": [{"numeric": [">", 0, "<=", 5]}],
            "d-count": [{"numeric": ["<", 10]}],
            "x-limit": [{"anything-but": [100, 200, 300]}],
            "source-ip": [{"cidr": "10.0.0.0/8"}],
        },
    }
    assert _matches(pattern, RULER_EVENT)
    assert not _matches(pattern, _with_detail(RULER_EVENT, state="initializing"))
    assert not _matches(pattern, _with_detail(RULER_EVENT, **{"x-limit": 300}))


def test_or_matching():
    pattern = {
        "source": ["aws.cloudwatch"],
        "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}],
    }
    assert _matches(pattern, {"source": "aws.cloudwatch", "metricName": "ReadLatency"})
    assert _matches(pattern, {"source": "aws.cloudwatch", "namespace": "AWS/ES"})
    assert not _matches(pattern, {"source": "aws.cloudwatch", "metricName": "DiskIO"})
    assert not _matches(pattern, {"source": "aws.ec2", "metricName": "ReadLatency"})
    nested = {
        "source": ["aws.cloudwatch"],
        "$or": [
            {"metricName": ["CPUUtilization", "ReadLatency"]},
            {
                "metricType": ["MetricType"],
                "namespace": ["AWS/EC2", "AWS/ES"],
                "$or": [{"metricId": [1234]}, {"spaceId": [1000]}],
            },
            {"scope": ["Service"]},
        ],
    }
    base = {"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2"}
    assert _matches(nested, {**base, "spaceId": 1000})
    assert not _matches(nested, {**base, "spaceId": 1001})
    assert _matches(nested, {"source": "aws.cloudwatch", "scope": "Service"})


def test_parallel_or_inside_detail():
    pattern = {
        "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
        "detail": {"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]},
    }
    assert _matches(pattern, {"namespace": "AWS/EC2", "detail": {"detail-type": "CloudWatch Alarm State Change"}})
    assert not _matches(pattern, {"namespace": "AWS/EC2", "detail": {"source": "aws.ec2"}})


def test_a_compiled_pattern_keeps_its_source_and_pickles():
    source = {"detail": {"cartValue": [{"numeric": [">=", 50]}]}}
    pattern = compile_pattern(source)
    source["detail"]["cartValue"] = ["changed"]  # compiling copied the pattern
    assert pattern.pattern == {"detail": {"cartValue": [{"numeric": [">=", 50]}]}}
    assert json.loads(pattern.to_json()) == pattern.pattern
    again = pickle.loads(pickle.dumps(pattern))
    assert isinstance(again, EventPattern) and again.matches({"detail": {"cartValue": 50}})


# --- Engage's reading of the spec's [lo, hi] ----------------------------------------------------------------------


def _cart_event(value: object) -> dict:
    return {"source": "ecommerce.cart", "detail-type": "CartAbandoned", "detail": {"cartValue": value}}


def test_the_spec_pattern_as_written_is_an_exact_match_under_eventbridge_semantics():
    written = yaml.safe_load(CART.read_text())["eventSources"][0]["config"]["eventPattern"]
    assert written["detail"] == {"cartValue": [50, 999999]}
    literal = compile_pattern(written)
    assert literal.matches(_cart_event(50)) and literal.matches(_cart_event(999999))
    assert not literal.matches(_cart_event(150.0))  # the spec's own example cart would not match


def test_the_spec_config_exposes_the_normalized_range():
    program = load_program(CART)
    assert isinstance(program, ReactiveProgram)
    source = program.eventSources[0]
    assert source.config.eventPattern["detail"] == {"cartValue": [50, 999999]}  # kept as written
    assert source.pattern == {
        "source": ["ecommerce.cart"],
        "detail-type": ["CartAbandoned"],
        "detail": {"cartValue": [{"numeric": [">=", 50, "<=", 999999]}]},
    }
    assert source.pattern == source.config.normalized_pattern == source.config.matcher.pattern
    matcher = source.config.matcher
    assert matcher is source.config.matcher  # compiled once
    for accepted in (50, 150.0, 999999, 50.0):
        assert matcher.matches(_cart_event(accepted)), accepted
    for refused in (49.99, 1000000, "150", None, True):
        assert not matcher.matches(_cart_event(refused)), refused
    assert not matcher.matches({**_cart_event(150), "detail-type": "CartPurchased"})
    # what production deploys is what matches here: the normalized pattern is valid EventBridge JSON
    assert compile_pattern(json.loads(matcher.to_json())).pattern == source.pattern


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ({"detail": {"v": [1, 5]}}, {"detail": {"v": [{"numeric": [">=", 1, "<=", 5]}]}}),
        ({"detail": {"v": [-2.5, 0]}}, {"detail": {"v": [{"numeric": [">=", -2.5, "<=", 0]}]}}),
        ({"detail": {"cart": {"v": [1, 5]}}}, {"detail": {"cart": {"v": [{"numeric": [">=", 1, "<=", 5]}]}}}),
        (
            {"detail": {"$or": [{"v": [1, 5]}, {"w": ["x"]}]}},
            {"detail": {"$or": [{"v": [{"numeric": [">=", 1, "<=", 5]}]}, {"w": ["x"]}]}},
        ),
        (
            {"$or": [{"detail": {"v": [1, 5]}}, {"source": ["s"]}]},
            {"$or": [{"detail": {"v": [{"numeric": [">=", 1, "<=", 5]}]}}, {"source": ["s"]}]},
        ),
    ],
)
def test_normalize_rewrites_exactly_the_range_pair_under_detail(pattern, expected):
    before = copy.deepcopy(pattern)
    assert normalize_pattern(pattern) == expected
    assert pattern == before  # the input is not changed
    assert normalize_pattern(expected) == expected  # idempotent
    compile_pattern(expected)


@pytest.mark.parametrize(
    "pattern",
    [
        {"detail": {"v": [5, 1]}},  # not lo < hi
        {"detail": {"v": [5, 5]}},
        {"detail": {"v": [1, 2, 3]}},  # not exactly two
        {"detail": {"v": [1]}},
        {"detail": {"v": ["1", "5"]}},  # not numbers
        {"detail": {"v": [True, 5]}},  # a boolean is not a plain number
        {"detail": {"v": [1, {"numeric": ["<", 5]}]}},
        {"detail": {"v": [0, 6e9]}},  # beyond EventBridge's numeric range: stays an exact match
        {"v": [1, 5]},  # not under detail
        {"source": {"v": [1, 5]}},
        {"detail": [1, 5]},  # detail itself is not "a key in detail"
    ],
)
def test_normalize_leaves_everything_else_as_written(pattern):
    assert normalize_pattern(pattern) == pattern


def test_normalize_passes_non_mappings_through_for_compile_to_reject():
    assert normalize_pattern(["x"]) == ["x"]
    with pytest.raises(PatternError):
        compile_pattern(normalize_pattern(["x"]))


# --- Pattern errors name the path of the bad part ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, path, reason",
    [
        ([], "", "non-empty mapping"),
        ({}, "", "non-empty mapping"),
        ({"source": "ecommerce.cart"}, "source", "must be a list of values (write ['ecommerce.cart'])"),
        ({"detail": {"cartValue": []}}, "detail.cartValue", "empty list"),
        ({"detail": {}}, "detail", "non-empty mapping"),
        ({1: ["a"]}, "1", "field names are strings"),
        ({"detail": {"c": ["a", {"range": [1, 2]}]}}, "detail.c.1", "content filter"),
        ({"d": [{"prefix": "a", "suffix": "b"}]}, "d.0", "content filter"),
        ({"d": [["nested"]]}, "d.0", "got list"),
        ({"d": [float("nan")]}, "d.0", "finite"),
        ({"d": [{"exists": "yes"}]}, "d.0", "exists takes true or false"),
        ({"d": [{"prefix": 5}]}, "d.0", "prefix takes a string"),
        ({"d": [{"equals-ignore-case": ["a"]}]}, "d.0", "equals-ignore-case takes a string"),
        ({"d": [{"numeric": [">=", "50"]}]}, "d.0", "operator/number pairs"),
        ({"d": [{"numeric": ["~", 5]}]}, "d.0", "operator/number pairs"),
        ({"d": [{"numeric": [">", 1, "<"]}]}, "d.0", "operator/number pairs"),
        ({"d": [{"numeric": ["<", 5, ">", 1]}]}, "d.0", "lower bound (> or >=) then an upper bound"),
        ({"d": [{"numeric": ["=", 1, "<", 5]}]}, "d.0", "lower bound (> or >=) then an upper bound"),
        ({"d": [{"numeric": [">", 5, "<=", 5]}]}, "d.0", "must be below the upper bound"),
        ({"d": [{"numeric": [">", True]}]}, "d.0", "operator/number pairs"),
        ({"d": [{"numeric": ["<", 6e9]}]}, "d.0", "within"),
        ({"d": [{"anything-but": ["a", 1]}]}, "d.0", "only strings or only numbers"),
        ({"d": [{"anything-but": []}]}, "d.0", "only strings or only numbers"),
        ({"d": [{"anything-but": None}]}, "d.0", "only strings or only numbers"),
        ({"d": [{"anything-but": {"prefix": ""}}]}, "d.0", "non-empty string"),
        ({"d": [{"anything-but": {"numeric": [">", 1]}}]}, "d.0", "anything-but takes one of"),
        ({"d": [{"wildcard": "a**b"}]}, "d.0", "consecutive *"),
        ({"d": [{"wildcard": "a\\b"}]}, "d.0", "backslash"),
        ({"d": [{"cidr": "10.0.0.300/8"}]}, "d.0", "cidr takes"),
        ({"detail": {"$or": [{"a": ["x"]}]}}, "detail.$or", "at least two patterns"),
        ({"$or": {"a": ["x"]}}, "$or", "at least two patterns"),
        ({"$or": [{"a": ["x"]}, ["b"]]}, "$or.1", "non-empty mapping"),
        ({"$or": [{"a": ["x"]}, {"b": {"prefix": ["x"]}}]}, "$or.1.b.prefix", "operator, not a field name"),
        ({"$or": [{"a": ["x"]}, {"b": [{"numeric": [">"]}]}]}, "$or.1.b.0", "operator/number pairs"),
    ],
)
def test_a_bad_pattern_raises_pattern_error_with_the_path(pattern, path, reason):
    with pytest.raises(PatternError) as exc:
        compile_pattern(pattern)
    assert exc.value.path == path
    assert reason in str(exc.value), str(exc.value)
    assert str(exc.value).startswith(f"{path or 'the pattern'}: ")
    assert isinstance(exc.value, ValueError)


def test_a_bad_pattern_in_a_program_config_names_the_field_and_the_path(tmp_path):
    doc = yaml.safe_load(CART.read_text())
    doc["eventSources"][0]["config"]["eventPattern"]["detail"] = {"cartValue": [{"numeric": ["<", 5, ">", 1]}]}
    path = tmp_path / "program.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as exc:
        load_program(path)
    message = str(exc.value)
    assert "eventSources.0.config.eventPattern" in message and "detail.cartValue.0" in message, message


def test_every_content_filter_is_accepted_in_a_config():
    doc = yaml.safe_load(CART.read_text())
    doc["eventSources"][0]["config"]["eventPattern"] = {
        "source": [{"prefix": "ecommerce."}],
        "detail-type": [{"equals-ignore-case": "cartabandoned"}],
        "resources": [{"wildcard": "arn:*:cart/*"}],
        "detail": {
            "cartValue": [{"numeric": [">=", 50]}],
            "currency": [{"anything-but": ["JPY", "INR"]}],
            "coupon": [{"exists": False}],
            "clientIp": [{"cidr": "10.0.0.0/8"}, {"exists": False}],
            "$or": [{"marketplace": ["US"]}, {"marketplace": [{"suffix": {"equals-ignore-case": "k"}}]}],
        },
    }
    program = validate_program(doc)
    assert isinstance(program, ReactiveProgram)
    matcher = program.eventSources[0].config.matcher
    event = {
        "source": "ecommerce.cart",
        "detail-type": "CartAbandoned",
        "resources": ["arn:aws:cart/C1"],
        "detail": {"cartValue": 150, "currency": "USD", "marketplace": "UK"},
    }
    assert matcher.matches(event)
    assert not matcher.matches({**event, "detail": {**event["detail"], "coupon": "SAVE10"}})
