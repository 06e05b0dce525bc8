"""resolver.resolve._lru.LruDict: the order the caches evict in is OrderedDict's, through
deletions, moves and the dict's own resizes (issue #20, memory)."""

from __future__ import annotations

import random
import sys
from collections import OrderedDict

import pytest

from resolver.resolve._lru import LruDict


def test_oldest_first_and_moves():
    lru = LruDict()
    for key in "abcd":
        lru[key] = key.upper()
    lru.move_to_end("a")
    lru["c"] = "C2"  # assignment to a present key keeps its place
    assert lru.popitem(last=False) == ("b", "B")
    assert lru.popitem(last=False) == ("c", "C2")
    assert lru.popitem() == ("a", "A")  # the newest
    assert list(lru.items()) == [("d", "D")]
    with pytest.raises(KeyError):
        lru.move_to_end("zz")


def test_empty_and_clear():
    lru = LruDict()
    with pytest.raises(KeyError):
        lru.popitem(last=False)
    for i in range(100):
        lru[i] = i
    for i in range(60):
        lru.popitem(last=False)
    lru.clear()
    with pytest.raises(KeyError):
        lru.popitem(last=False)
    lru[7] = 7
    assert lru.popitem(last=False) == (7, 7)


@pytest.mark.parametrize("seed", range(4))
def test_same_order_as_ordereddict_through_resizes(seed):
    """A bounded cache's work (insert new, evict oldest, move hits to the end, delete expired,
    clear now and then) against OrderedDict, step by step: the dict resizes many times over."""
    rng = random.Random(seed)
    lru, model = LruDict(), OrderedDict()
    bound = rng.choice((1, 7, 300, 2000))
    for step in range(30_000):
        op = rng.random()
        key = rng.randrange(4 * bound + 1)
        if op < 0.55:
            lru.pop(key, None)
            model.pop(key, None)
            lru[key] = model[key] = step
            while len(model) > bound:
                assert lru.popitem(last=False) == model.popitem(last=False)
        elif op < 0.8 and key in model:
            lru.move_to_end(key)
            model.move_to_end(key)
        elif op < 0.95:
            assert lru.pop(key, None) == model.pop(key, None)
        elif op < 0.951:
            lru.clear()
            model.clear()
        assert len(lru) == len(model)
    assert list(lru.items()) == list(model.items())
    while model:
        assert lru.popitem(last=False) == model.popitem(last=False)



def test_a_cache_at_its_bound_keeps_the_table_of_its_size():
    """Moves and evictions at a steady number of entries leave holes in the entry table; the
    map rebuilds before the dict would resize to three times its entries, so it stays the
    size of a dict of as many entries built by insertion, in the same order as OrderedDict."""
    rng = random.Random(5)
    lru, model = LruDict(), OrderedDict()
    for i in range(12_000):
        lru[i] = model[i] = i
    for step in range(60_000):
        key = rng.randrange(12_000 + step)
        if key in model:
            lru.move_to_end(key)
            model.move_to_end(key)
        else:
            assert lru.popitem(last=False) == model.popitem(last=False)
            lru[12_000 + step] = model[12_000 + step] = step
    assert list(lru.items()) == list(model.items())
    built = LruDict()
    for i in range(12_000):
        built[i] = i
    assert sys.getsizeof(lru) <= sys.getsizeof(built)
