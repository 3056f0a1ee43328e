from tidemq.store import record


def test_java_string_hash_matches_rocketmq_tag_codes() -> None:
    assert record.java_string_hash("TagA") == 2598919
    assert record.java_string_hash("TagB") == 2598920
    assert record.java_string_hash("*") == 42
    assert record.java_string_hash("") == 0
