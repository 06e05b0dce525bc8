# cython: boundscheck=False, wraparound=False
"""A dict in use order, for the caches' least-recently-used eviction, without
``collections.OrderedDict``'s linked list: a node of 48 octets for each entry and a table of
8 octets for each slot, about 7 MiB for 100,000 entries (issue #20, memory).

A dict keeps its entries in insertion order already; an entry deleted leaves a hole that only
the next resize of the table removes, so taking the oldest entry by scanning from the start
would pass the same holes again and again. This map remembers where the oldest entry was found
(``PyDict_Next``'s position in the entry table) and starts there the next time, from the start
again once an insertion replaced the table (a resize), so each hole is passed once.

A cache at its bound deletes as often as it inserts. Left to itself, the dict then fills its
entry table with holes and resizes to three times its live entries, twice the table a dict of
as many entries built by insertion has (10 MiB instead of 5 for 100,000). So once the holes
are half as many as the live entries, the map rebuilds itself at its size, in order.

Insert through ``m[key] = value`` only (``update``, ``setdefault`` and ``|=`` go round the
check: the order then found may be off, never a wrong answer to "is it empty").
"""

from cpython.dict cimport PyDict_Next, PyDict_SetItem
from cpython.ref cimport PyObject

cdef extern from "Python.h":
    ctypedef struct PyDictObject:
        void *ma_keys  # the entry table, replaced when the dict is resized or cleared


cdef class LruDict(dict):
    """A ``dict`` whose oldest entry (inserted, or moved to the end, longest ago) is taken in
    amortised constant time: :meth:`move_to_end` and ``popitem(last=False)``, as
    ``OrderedDict`` has them. Assigning to a key present keeps its place, as a dict does."""

    def __setitem__(self, key, value):
        cdef void *table = (<PyDictObject *>self).ma_keys
        PyDict_SetItem(self, key, value)
        if (<PyDictObject *>self).ma_keys != table:  # resized: the holes are gone
            self._front = self._holes = 0

    def __delitem__(self, key):
        dict.__delitem__(self, key)
        self._deleted()

    def clear(self):
        dict.clear(self)
        self._front = self._holes = 0

    def pop(self, key, *default):
        """As ``dict.pop``."""
        cdef Py_ssize_t size = len(self)
        value = dict.pop(self, key, *default)
        if len(self) != size:
            self._deleted()
        return value

    def move_to_end(self, key):
        """Make ``key`` the newest entry (KeyError if absent)."""
        value = dict.pop(self, key)
        self._deleted()
        self[key] = value

    def popitem(self, bint last=True):
        """Remove and return the newest (``last``) or the oldest ``(key, value)`` pair;
        KeyError when empty."""
        cdef PyObject *key
        cdef PyObject *value
        cdef Py_ssize_t pos
        if last:
            item = dict.popitem(self)
            self._deleted()
            return item
        pos = self._front
        if not PyDict_Next(self, &pos, &key, &value):
            pos = 0
            if not PyDict_Next(self, &pos, &key, &value):
                raise KeyError("popitem(): dictionary is empty")
        item = (<object>key, <object>value)
        dict.__delitem__(self, <object>key)
        self._front = pos  # no entry left before this position of the table
        self._deleted()
        return item

    cdef void _deleted(self):
        """One more hole; rebuild once they are half as many as the live entries."""
        self._holes += 1
        if self._holes * 2 >= len(self) and self._holes >= 64:
            live = dict(self)
            dict.clear(self)
            dict.update(self, live)  # one table sized for them, in the same order
            self._front = self._holes = 0
