cdef class LruDict(dict):
    cdef Py_ssize_t _front  # no entry before this position of the entry table (_lru.pyx)
    cdef Py_ssize_t _holes  # entries deleted since the table was last made

    cdef void _deleted(self)
