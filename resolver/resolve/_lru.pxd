cdef class LruDict(dict):
    cdef Py_ssize_t _front  # no entry before this position of the entry table (_lru.pyx)
