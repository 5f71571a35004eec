"""Tests for text helpers (core/text.py), the tree (core/tree.py) and the run directory (core/store.py)."""

from __future__ import annotations

import orjson
import pytest

from treesynth.core.errors import RunDirError
from treesynth.core.store import RUN_FORMAT, RunStore
from treesynth.core.text import normalise, sample_key, slugify, squash, truncate
from treesynth.core.tree import EXPANDED, LEAF, PENDING, TREE_FORMAT, Node, Tree
from treesynth.core.treefile import load_tree_readonly

# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Hello", "hello"),
        ("  Hello   World  ", "hello world"),
        ("Hello,\n\tWorld!!", "hello, world"),
        ("...misc.", "misc"),
        ("Straße", "strasse"),
        ("ﬁsh", "fish"),  # NFKC ligature
        ("ＡＢＣ", "abc"),  # full-width
        ("", ""),
        ("!!!", ""),
        ("_x_", "x"),
    ],
)
def test_normalise(raw, expected):
    assert normalise(raw) == expected


def test_normalise_idempotent():
    for s in ["  A  b. ", "Ünïcödé  Text!", "--x--"]:
        assert normalise(normalise(s)) == normalise(s)


@pytest.mark.parametrize("s", [
    "", " ", "\n", "a", "a b", "a\nb", "a\n\nb", "a \nb", " a", "a ", "\na", "a\n", "a\tb", "a\rb", "a\x0bb",
    "a\x0cb", "a\x1cb", "a\x1fb", "a\x85b", "a\xa0b", "a\u2003b", "a\u2028b", "a\u3000b", "a\u200bb", "é\nü  ß",
    "Step 1: 2+2=4\nStep 2: <<4*3=12>>12\n#### 12",
])
def test_squash_is_split_and_join(s):
    assert squash(s) == " ".join(s.split())


def test_squash_matches_split_and_join_on_random_text():
    import random

    rng = random.Random(7)
    alphabet = ["a", "b", "7", " ", "\n", "\t", "\r", "\x0b", "\x1e", "\xa0", "\u2009", "\u200b", "é", "\x00"]
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert squash(s) == " ".join(s.split()), repr(s)


def test_sample_key_equal_for_case_and_whitespace_variants():
    f = ("question", "answer")
    a = {"question": "What is  2+2?", "answer": "Four"}
    b = {"question": "  what is 2+2?\n", "answer": "FOUR "}
    c = {"question": "WHAT\tIS 2+2?", "answer": "four", "extra": "ignored"}
    assert sample_key(a, f) == sample_key(b, f) == sample_key(c, f)
    assert isinstance(sample_key(a, f), int) and 0 <= sample_key(a, f) < 2**64


def test_sample_key_differs_for_different_text_and_field_split():
    f = ("question", "answer")
    a = {"question": "What is 2+2?", "answer": "Four"}
    assert sample_key(a, f) != sample_key({"question": "What is 2+3?", "answer": "Four"}, f)
    # moving text across the field boundary is a different sample
    assert sample_key({"question": "a b", "answer": "c"}, f) != sample_key({"question": "a", "answer": "b c"}, f)
    # a missing field counts as empty
    assert sample_key({"question": "x"}, f) == sample_key({"question": "x", "answer": ""}, f)


def test_slugify_and_truncate():
    assert slugify("Grade-school Math: Word Problems!") == "grade-school-math-word-problems"
    assert slugify("!!!") == "run"
    assert len(slugify("a" * 100)) == 40
    assert truncate("hello", 10) == "hello"
    assert truncate("hello world", 5) == "hell…"
    assert len(truncate("hello world", 5)) == 5


# ---------------------------------------------------------------- tree
def small_tree() -> Tree:
    t = Tree.new(90)
    root = t.root
    root.status = EXPANDED
    root.split_dimension = "topic"
    root.children = ["0.0", "0.1"]
    t.upsert(Node(id="0.0", parent="0", depth=1, dimension="topic", value="algebra", source="pivots", target=60, status=EXPANDED,
                  split_dimension="difficulty", children=["0.0.0", "0.0.1"]))
    t.upsert(Node(id="0.1", parent="0", depth=1, dimension="topic", value="geometry", source="coverage", target=30, status=LEAF))
    t.upsert(Node(id="0.0.0", parent="0.0", depth=2, dimension="difficulty", value="easy", target=30, status=LEAF))
    t.upsert(Node(id="0.0.1", parent="0.0", depth=2, dimension="difficulty", value="hard", target=30, status=LEAF,
                  values=["a", "b"], source="open_ended"))
    return t


def test_tree_new():
    t = Tree.new(123)
    assert len(t) == 1
    assert t.root.id == "0" and t.root.parent is None and t.root.depth == 0
    assert t.root.target == 123 and t.root.status == PENDING and t.root.source == "root"
    assert t.path("0") == []
    t.check()


def test_tree_path_and_ancestors():
    t = small_tree()
    assert t.path("0.0.1") == [{"dimension": "topic", "value": "algebra"}, {"dimension": "difficulty", "value": "hard"}]
    assert t.path("0.1") == [{"dimension": "topic", "value": "geometry"}]
    assert t.ancestor_dimensions("0.0.0") == ["topic", "difficulty"]


def test_tree_walk_leaves_subtree():
    t = small_tree()
    assert [n.id for n in t.walk()] == ["0", "0.0", "0.0.0", "0.0.1", "0.1"]
    assert t.subtree_ids("0.0") == ["0.0", "0.0.0", "0.0.1"]
    assert sorted(n.id for n in t.leaves()) == ["0.0.0", "0.0.1", "0.1"]
    assert t.get("0.0.1").open_ended and not t.get("0.0.0").open_ended


def test_tree_round_trip():
    t = small_tree()
    d = t.to_dict(seq=17)
    assert d["format"] == TREE_FORMAT and d["seq"] == 17
    d2 = orjson.loads(orjson.dumps(d))  # through JSON, as on disk
    t2, seq = Tree.from_dict(d2)
    assert seq == 17
    assert {k: v.to_dict() for k, v in t2.nodes.items()} == {k: v.to_dict() for k, v in t.nodes.items()}
    assert t2.to_dict(17) == d


def test_tree_check_rejects_child_with_wrong_parent():
    t = small_tree()
    t.root.children.append("0.0.0")  # root lists a grandchild whose parent is "0.0"
    with pytest.raises(ValueError, match=r"node '0' lists child '0.0.0' that does not point back"):
        t.check()


def test_tree_check_rejects_child_pointing_elsewhere():
    t = small_tree()
    t.get("0.0").children.append("0.1")  # "0.1" points to "0", not "0.0"
    with pytest.raises(ValueError, match="does not point back"):
        t.check()


def test_tree_check_rejects_missing_child_and_parent_and_bad_depth():
    t = small_tree()
    t.root.children.append("0.9")
    with pytest.raises(ValueError, match="does not point back"):
        t.check()
    t = small_tree()
    t.upsert(Node(id="0.5.0", parent="0.5", depth=2))
    with pytest.raises(ValueError, match="missing parent"):
        t.check()
    t = small_tree()
    t.get("0.1").depth = 3
    with pytest.raises(ValueError, match="has depth 3"):
        t.check()
    t = small_tree()
    t.upsert(Node(id="1.0", parent="0", depth=1))
    with pytest.raises(ValueError, match="does not extend"):
        t.check()


def test_tree_from_dict_rejects_bad_documents():
    good = small_tree().to_dict()
    with pytest.raises(ValueError):
        Tree.from_dict({"format": "other", "nodes": []})
    with pytest.raises(ValueError):
        Tree.from_dict({**good, "nodes": "x"})
    bad = orjson.loads(orjson.dumps(good))
    bad["nodes"][1]["status"] = "exploded"
    with pytest.raises(ValueError, match="invalid id, status or depth"):
        Tree.from_dict(bad)
    bad = orjson.loads(orjson.dumps(good))
    bad["nodes"][1]["surprise"] = 1
    with pytest.raises(ValueError, match="unknown keys"):
        Tree.from_dict(bad)
    bad = orjson.loads(orjson.dumps(good))
    bad["nodes"][1]["target"] = -1
    with pytest.raises(ValueError, match="invalid target"):
        Tree.from_dict(bad)
    bad = orjson.loads(orjson.dumps(good))
    bad["nodes"] = [n for n in bad["nodes"] if n["id"] != "0"]
    with pytest.raises(ValueError, match="no root"):
        Tree.from_dict(bad)


# ---------------------------------------------------------------- store
CONFIG = {"task": "t", "size": 90, "fields": ["text"]}


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    s = RunStore.create(d, CONFIG)
    s.close()
    return d


def write_lines(path, objs, tail=b""):
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs) + tail)


def journal(store: RunStore, tree: Tree) -> None:
    for n in tree.walk():
        store.journal_node(n)


def test_create_writes_config_and_state(tmp_path):
    d = tmp_path / "new" / "run"
    s = RunStore.create(d, CONFIG)
    try:
        assert s.read_config() == CONFIG
        assert orjson.loads((d / "config.json").read_bytes())["format"] == RUN_FORMAT
        assert s.read_state()["status"] == "running"
    finally:
        s.close()


def test_create_refuses_non_empty_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "something.txt").write_text("x")
    with pytest.raises(RunDirError, match="already exists and is not empty"):
        RunStore.create(d, CONFIG)
    assert sorted(p.name for p in d.iterdir()) == ["something.txt"]


def test_create_refuses_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirError):
        RunStore.create(f, CONFIG)


def test_create_accepts_existing_empty_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    RunStore.create(d, CONFIG).close()
    assert (d / "config.json").is_file()


def test_open_requires_config_json(tmp_path):
    d = tmp_path / "notarun"
    d.mkdir()
    (d / "samples.jsonl").write_text("")
    with pytest.raises(RunDirError, match=r"is not a treesynth run \(no config.json\)"):
        RunStore.open(d)
    with pytest.raises(RunDirError, match="does not exist"):
        RunStore.open(tmp_path / "missing")
    with pytest.raises(RunDirError, match="is not a directory"):
        RunStore.open(d / "samples.jsonl")


def test_second_open_on_locked_dir_is_in_use(run_dir):
    s1 = RunStore.open(run_dir)
    try:
        with pytest.raises(RunDirError, match="in use") as ei:
            RunStore.open(run_dir)
        assert "\n" not in str(ei.value)
    finally:
        s1.close()
    RunStore.open(run_dir).close()  # released on close


def test_create_holds_the_lock(tmp_path):
    d = tmp_path / "run"
    s = RunStore.create(d, CONFIG)
    try:
        with pytest.raises(RunDirError, match="in use"):
            RunStore.open(d)
    finally:
        s.close()


def test_read_config_rejects_wrong_format(run_dir):
    (run_dir / "config.json").write_bytes(orjson.dumps({"format": "nope", "config": {}}))
    s = RunStore.open(run_dir)
    try:
        with pytest.raises(RunDirError, match="corrupt"):
            s.read_config()
    finally:
        s.close()


def test_round_trip_through_store(run_dir):
    s = RunStore.open(run_dir)
    t = small_tree()
    journal(s, t)
    s.append_samples([{"leaf_id": "0.1", "slot": 0, "_k": 11, "text": "a"}, {"leaf_id": "0.1", "slot": 2, "_k": 12, "text": "b"}])
    s.append_samples([{"leaf_id": "0.0.0", "slot": 0, "_k": 13, "text": "c"}])
    s.append_empty_slot("0.1", 5)
    s.maybe_snapshot(t, force=True)
    s.close()

    s = RunStore.open(run_dir)
    try:
        r = s.recover(90)
        assert r.warnings == []
        assert r.seq == len(t) == s.seq
        assert {k: v.to_dict() for k, v in r.tree.nodes.items()} == {k: v.to_dict() for k, v in t.nodes.items()}
        assert r.rows == 3
        assert r.keys == {11, 12, 13}
        assert r.leaves["0.1"].rows == 2 and r.leaves["0.1"].max_slot == 5 and r.leaves["0.1"].empty_slots == {5}
        assert r.leaves["0.0.0"].rows == 1 and r.leaves["0.0.0"].max_slot == 0
    finally:
        s.close()


def test_recover_cuts_torn_last_line_and_warns(run_dir):
    rows = [{"leaf_id": "0", "slot": i, "_k": 100 + i, "text": f"s{i}"} for i in range(3)]
    good = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    torn = b'{"leaf_id": "0", "slot": 3, "_k": 10'
    (run_dir / "samples.jsonl").write_bytes(good + torn)
    s = RunStore.open(run_dir)
    try:
        r = s.recover(90)
    finally:
        s.close()
    assert r.rows == 3
    assert r.keys == {100, 101, 102}
    assert r.leaves["0"].max_slot == 2
    assert any(w.startswith("samples.jsonl: cut") and f"{len(torn)} bytes" in w for w in r.warnings)
    assert (run_dir / "samples.jsonl").read_bytes() == good  # the torn tail is gone from disk


def test_recover_cuts_valid_json_without_newline(run_dir):
    # a complete object without its newline is still an interrupted write
    write_lines(run_dir / "slots.jsonl", [{"leaf_id": "0", "slot": 1}], tail=b'{"leaf_id": "0", "slot": 2}')
    s = RunStore.open(run_dir)
    try:
        r = s.recover(90)
    finally:
        s.close()
    assert r.leaves["0"].empty_slots == {1}
    assert any(w.startswith("slots.jsonl: cut") for w in r.warnings)


def test_recover_cuts_damaged_last_line_with_newline(run_dir):
    write_lines(run_dir / "samples.jsonl", [{"leaf_id": "0", "slot": 0, "_k": 1}], tail=b'{"leaf_id": "0", "sl\n')
    s = RunStore.open(run_dir)
    try:
        r = s.recover(90)
    finally:
        s.close()
    assert r.rows == 1
    assert len(r.warnings) == 1


def test_recover_then_append_continues_cleanly(run_dir):
    write_lines(run_dir / "samples.jsonl", [{"leaf_id": "0", "slot": 0, "_k": 1}], tail=b'{"leaf_id": "0", "slot"')
    s = RunStore.open(run_dir)
    s.recover(90)
    s.append_samples([{"leaf_id": "0", "slot": 1, "_k": 2}])
    s.close()
    lines = (run_dir / "samples.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["_k"] for x in lines] == [1, 2]


def test_damaged_line_in_the_middle_is_corruption(run_dir):
    good = [{"leaf_id": "0", "slot": i, "_k": i} for i in range(2)]
    data = orjson.dumps(good[0]) + b"\n" + b"{garbage\n" + orjson.dumps(good[1]) + b"\n"
    (run_dir / "samples.jsonl").write_bytes(data)
    s = RunStore.open(run_dir)
    try:
        with pytest.raises(RunDirError, match=r"corrupt: samples.jsonl has a damaged line at byte") as ei:
            s.recover(90)
        assert "\n" not in str(ei.value)
    finally:
        s.close()
    assert (run_dir / "samples.jsonl").read_bytes() == data  # nothing was cut


def test_corrupt_tree_json_rebuilt_from_journal(run_dir):
    s = RunStore.open(run_dir)
    t = small_tree()
    journal(s, t)
    s.maybe_snapshot(t, force=True)
    s.close()
    (run_dir / "tree.json").write_bytes(b'{"format": "treesynth.tree/1", "nodes": [{"id": ')

    s = RunStore.open(run_dir)
    try:
        r = s.recover(90)
    finally:
        s.close()
    assert any(w.startswith("tree.json is damaged") and "rebuilt it from nodes.jsonl" in w for w in r.warnings)
    assert r.seq == len(t)
    assert {k: v.to_dict() for k, v in r.tree.nodes.items()} == {k: v.to_dict() for k, v in t.nodes.items()}


def test_tree_json_with_invalid_structure_rebuilt(run_dir):
    s = RunStore.open(run_dir)
    t = small_tree()
    journal(s, t)
    s.close()
    bad = t.to_dict(seq=999)
    bad["nodes"][0]["children"].append("0.7")  # inconsistent snapshot
    (run_dir / "tree.json").write_bytes(orjson.dumps(bad))
    s = RunStore.open(run_dir)
    try:
        r = s.recover(90)
    finally:
        s.close()
    assert any("tree.json is damaged" in w for w in r.warnings)
    assert sorted(r.tree.nodes) == sorted(t.nodes)


def test_journal_replayed_over_older_snapshot(run_dir):
    s = RunStore.open(run_dir)
    t = Tree.new(90)
    s.journal_node(t.root)
    s.maybe_snapshot(t, force=True)  # snapshot at seq 1: the root only
    full = small_tree()
    for n in full.walk():
        s.journal_node(n)  # seq 2..6
    s.close()
    s = RunStore.open(run_dir)
    try:
        r = s.recover(90)
    finally:
        s.close()
    assert r.warnings == []
    assert r.seq == 1 + len(full)
    assert sorted(r.tree.nodes) == sorted(full.nodes)
    assert r.tree.root.status == EXPANDED


def test_recover_rejects_size_mismatch(run_dir):
    s = RunStore.open(run_dir)
    journal(s, small_tree())
    try:
        with pytest.raises(RunDirError, match=r"size \(90\) differs from the config's \(50\)"):
            s.recover(50)
    finally:
        s.close()


def test_recover_rejects_invalid_journal_node(run_dir):
    write_lines(run_dir / "nodes.jsonl", [{"seq": 1, "node": {"id": "0", "parent": None, "depth": 0, "status": "weird"}}])
    s = RunStore.open(run_dir)
    try:
        with pytest.raises(RunDirError, match="nodes.jsonl entry 1 is invalid"):
            s.recover(90)
    finally:
        s.close()


def test_recover_empty_run(run_dir):
    s = RunStore.open(run_dir)
    try:
        r = s.recover(90)
    finally:
        s.close()
    assert len(r.tree) == 1 and r.tree.root.target == 90
    assert r.rows == 0 and r.leaves == {} and r.keys == set() and r.warnings == []
    assert r.state["status"] == "running"


def test_load_tree_readonly_does_not_lock_or_repair(run_dir):
    s = RunStore.open(run_dir)
    journal(s, small_tree())
    s.close()
    with open(run_dir / "nodes.jsonl", "ab") as f:
        f.write(b'{"seq": 99, "no')
    before = (run_dir / "nodes.jsonl").read_bytes()
    held = RunStore.open(run_dir)
    try:
        t = load_tree_readonly(run_dir)  # works while another process holds the lock
    finally:
        held.close()
    assert sorted(t.nodes) == sorted(small_tree().nodes)
    assert (run_dir / "nodes.jsonl").read_bytes() == before


def test_identity_fields_are_the_declared_prompt_fields_when_the_rows_have_them():
    from treesynth.core.text import identity_fields

    assert identity_fields(("question", "answer"), ("question",)) == ("question",)
    assert identity_fields(("instruction", "input", "output"), ("instruction", "input")) == ("instruction", "input")
    assert identity_fields(("question", "answer")) == ("question", "answer")  # none declared: the whole row
    assert identity_fields(("problem", "answer"), ("question",)) == ("problem", "answer")  # a preset's hint that does not fit
    assert identity_fields(("question",), ("question",)) == ("question",)
    assert identity_fields(("q", "a"), ("q", "a")) == ("q", "a")
